"""An application factory, for `forms_factory:create_app()` and literal arguments."""


def create_app(name="factory", greeting="made by"):
    body = ("%s %s" % (greeting, name)).encode("ascii")

    def wsgi(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    return wsgi
