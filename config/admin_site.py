"""The admin site, branded as ftplatform, whose home page shows each user the work of their roles
(config.home) above the list of every page they may open."""
from django.contrib import admin

from .home import home_sections


class FtplatformAdminSite(admin.AdminSite):
    site_header = "ftplatform"
    site_title = "ftplatform"
    index_title = "Home"
    site_url = None  # the header's "View site" pointed at /, which serves nothing: the admin is the site

    def index(self, request, extra_context=None):
        return super().index(request, {**(extra_context or {}), "home": home_sections(request.user)})
