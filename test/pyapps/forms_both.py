"""Defines both `application` and `app`: the default lookup must pick `application`."""


def _answer(name):
    def wsgi(environ, start_response):
        body = name.encode("ascii")
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    return wsgi


application = _answer("application")
app = _answer("app")
