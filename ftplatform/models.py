"""ftplatform's one model, JobAttempt, lives with the job framework (ftplatform.jobrows); Django finds it here.
This module also makes Django send ftplatform post_migrate, where the roles are synced (see apps.py)."""
from .jobrows import JobAttempt

__all__ = ["JobAttempt"]
