"""ftplatform holds no models of its own; this module exists so that Django sends it post_migrate
(which it skips for apps without a models module), where the roles are synced (see apps.py)."""
