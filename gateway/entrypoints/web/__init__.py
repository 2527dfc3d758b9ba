"""The web console for clients' users and operators (docs/web.md); built by ``app.build_web_app``."""
