"""The HTTP server: the API, live event streams, and the web page. See ``app.create_app``."""
