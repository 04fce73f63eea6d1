"""The API's permission class, loaded from settings (so it imports no DRF views)."""
from django.core.exceptions import ImproperlyConfigured
from rest_framework.permissions import SAFE_METHODS, BasePermission


class RolePermissions(BasePermission):
    """The roles' model permissions (ftplatform.roles) applied to every API endpoint.

    Reads need the view permission of the viewset's model; ``create`` needs its add
    permission, ``update``/``partial_update`` its change permission. Any other write action
    must be listed in the viewset's ``action_permissions`` ({action: [perm, ...]}), or the
    request fails loudly as misconfigured, so a new endpoint is never open by accident.
    Anonymous requests get 401; what a user may not do, 403. Per-object rules (whose
    example, which dataset) are the querysets and services' business (curation.access).
    """

    WRITE_VERBS = {"create": "add", "update": "change", "partial_update": "change", "destroy": "delete"}

    def required(self, request, view) -> list[str]:
        action = getattr(view, "action", None)
        if action == "metadata" and request.method not in SAFE_METHODS:
            # OPTIONS asks, per write method, whether to describe its form (DRF's SimpleMetadata,
            # on a copy of the request): that is the permission of the action the method routes to.
            action = getattr(view, "action_map", {}).get(request.method.lower())
        if action is None:
            return []  # the API root (links only), or a method the view lacks: DRF answers 405 next
        listed = getattr(view, "action_permissions", {}).get(action)
        if listed is not None:
            return list(listed)
        opts = view.get_queryset().model._meta
        if request.method in SAFE_METHODS:
            return [f"{opts.app_label}.view_{opts.model_name}"]
        verb = self.WRITE_VERBS.get(action)
        if verb is None:
            raise ImproperlyConfigured(f"{type(view).__name__}.{action}: list it in action_permissions")
        return [f"{opts.app_label}.{verb}_{opts.model_name}"]

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return user.is_active and user.has_perms(self.required(request, view))
