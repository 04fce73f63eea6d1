"""The assembled platform: the URL configuration, the API router, the WSGI entry point and the demo command.

The one package that knows every app (it sits above evaluation in .importlinter's layers); the shared
layer, ftplatform, knows none.
"""
