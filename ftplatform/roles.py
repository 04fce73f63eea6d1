"""The roles people work in, as Django groups, and the model permissions each holds.

This table is the one place that says who may do what at the model level. The admin reads it
through Django's permissions (``has_view_permission`` and friends), the API through
``ftplatform.permissions.RolePermissions``, and the services check the same permissions (plus the
per-object rules in ``curation.access``) so that management commands obey them too.

The roles migration (``ftplatform/migrations/0001_roles.py``) creates the groups, and every
``migrate`` (and test-database flush) syncs them to this table again through post_migrate, so
this table, not edits in the admin's group pages, is the source of truth. Superusers hold
every permission anyway.
"""
ANNOTATOR, REVIEWER, ENGINEER, RATER = "annotator", "reviewer", "engineer", "rater"

ROLE_PERMISSIONS: dict[str, dict[str, list[str]]] = {
    # Write and fix examples (their own and those assigned to them), import files, read guidelines.
    ANNOTATOR: {
        "curation": ["view_dataset", "view_example", "add_example", "change_example", "view_review",
                     "view_importbatch", "add_importbatch", "view_suggestion", "view_preferencepair",
                     "add_preferencepair"],
        "ftplatform": ["view_jobattempt"],
    },
    # Decide on examples in the datasets they review (edit-and-approve included) and sign off snapshots.
    REVIEWER: {
        "curation": ["view_dataset", "view_example", "change_example", "review_example", "view_review",
                     "view_importbatch", "view_snapshot", "review_snapshot", "view_snapshotitem",
                     "view_snapshotexport", "view_suggestion", "view_preferencepair"],
        # Reviewers judge quality already: they rate predictions too (blind, as raters do).
        "evaluation": ["view_ratingcriterion", "add_humanrating", "add_pairwisejudgment"],
        "ftplatform": ["view_jobattempt"],
    },
    # Manage datasets, snapshots, training runs, evaluations and deployments; read every example.
    ENGINEER: {
        "curation": ["view_dataset", "add_dataset", "change_dataset", "view_example", "view_all_examples",
                     "view_review",
                     "view_importbatch", "add_importbatch", "view_snapshot", "add_snapshot", "view_snapshotitem",
                     "view_snapshotexport", "add_snapshotexport", "view_snapshotjob", "view_suggestion",
                     "view_preferencepair", "add_preferencepair"],
        "training": ["view_basemodel", "view_trainingrun", "add_trainingrun", "change_trainingrun",
                     "view_trainingevent", "view_checkpoint", "view_modelversion", "add_modelversion",
                     "change_modelversion"],
        "evaluation": ["view_evalrun", "add_evalrun", "view_prediction", "view_ratingcriterion",
                       "add_ratingcriterion", "change_ratingcriterion", "view_humanrating",
                       "view_pairwisejudgment", "view_learningcurve", "add_learningcurve",
                       "view_preannotationrun", "add_preannotationrun"],
        # Deploy model versions, hand out API keys, read the request log and turn it into examples.
        "serving": ["view_deployment", "add_deployment", "change_deployment", "view_apikey", "add_apikey",
                    "change_apikey", "view_requestlog"],
        "ftplatform": ["view_jobattempt"],
    },
    # Score predictions on a dataset's criteria and judge blind pairs (never seeing other raters'
    # scores or which model wrote what: the rating pages show only the input and the outputs).
    RATER: {
        "evaluation": ["view_ratingcriterion", "add_humanrating", "add_pairwisejudgment"],
    },
}


def sync_roles(apps) -> None:
    """Create the groups and set each one's permissions to exactly the table above.

    ``apps`` is a migration's app registry (or ``django.apps.apps``). Permissions that do not
    exist yet (a fresh database, before post_migrate) are created first. In a migration's registry,
    permissions of models a later migration adds are left for later (post_migrate syncs again).

    Raises:
        LookupError: a permission in the table names no model permission (a typo or a removed model).
    """
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        # Historical app configs (in migrations) lack models_module, and create_permissions skips those.
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = models_module or True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = models_module
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for role, by_app in ROLE_PERMISSIONS.items():
        wanted = []
        for app_label, codenames in by_app.items():
            # A migration's state lacks the models later migrations add: their permissions wait for post_migrate.
            codenames = [c for c in codenames if not _added_later(apps, global_apps, app_label, c)]
            found = list(permission_model.objects.filter(content_type__app_label=app_label, codename__in=codenames))
            missing = sorted(set(codenames) - {p.codename for p in found})
            if missing:
                raise LookupError(f"role {role!r}: no permission {', '.join(f'{app_label}.{c}' for c in missing)}")
            wanted += found
        group, _ = group_model.objects.get_or_create(name=role)
        group.permissions.set(wanted)


def _has_model(apps, app_label: str, model_name: str) -> bool:
    try:
        apps.get_model(app_label, model_name)
    except LookupError:
        return False
    return True


def _added_later(apps, global_apps, app_label: str, codename: str) -> bool:
    """Whether ``codename`` is a model permission of a model the code has but ``apps`` (a migration's
    state) does not yet. Custom permissions ("view_all_examples") are never skipped."""
    model_name = codename.partition("_")[2]
    return _has_model(global_apps, app_label, model_name) and not _has_model(apps, app_label, model_name)


def require_permission(user, perm: str, doing: str) -> None:
    """Raise ``ftplatform.errors.NotAllowed`` unless ``user`` is active and holds ``perm``.

    ``doing`` completes the message, e.g. "create snapshots" -> "alice may not create snapshots
    (needs the 'curation.add_snapshot' permission)".
    """
    from .errors import NotAllowed

    if not (user and user.is_active and user.has_perm(perm)):
        raise NotAllowed(f"{user} may not {doing} (needs the {perm!r} permission)")


def has_role(user, role: str) -> bool:
    """Whether ``user`` works in ``role`` (a member of its group); superusers hold every role."""
    return user.is_active and (user.is_superuser or user.groups.filter(name=role).exists())
