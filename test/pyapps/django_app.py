"""A minimal single-file Django project for test/frameworks.test.ts (served as `django_app:application`).

Settings are configured in code; no database, no templates, no CSRF middleware.
"""
import hashlib
import json

from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bunicorn-tests-not-a-secret",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )

import django  # noqa: E402

django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse, HttpResponseRedirect, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path  # noqa: E402


def hello(request, name):
    return HttpResponse("Hello, %s!" % name, content_type="text/plain")


def echo_json(request):
    if request.method != "POST":
        return HttpResponse(status=405)
    data = json.loads(request.body)
    return JsonResponse({"received": data, "doubled": data["n"] * 2})


def form(request):
    return JsonResponse({k: request.POST.getlist(k) for k in request.POST})


def upload(request):
    f = request.FILES["file"]
    h = hashlib.sha256()
    size = 0
    for chunk in f.chunks():
        h.update(chunk)
        size += len(chunk)
    return JsonResponse({"name": f.name, "size": size, "sha256": h.hexdigest(), "note": request.POST.get("note")})


def stream(request):
    who = request.GET.get("who", "?")

    def body():
        yield "start %s\n" % who
        for i in range(3):
            yield "chunk %d\n" % i
        yield "end\n"
    return StreamingHttpResponse(body(), content_type="text/plain")


def set_cookie(request):
    resp = HttpResponse("cookies set", content_type="text/plain")
    resp.set_cookie("flavor", "chocolate-chip")
    resp.set_cookie("count", "42", httponly=True)
    return resp


def get_cookie(request):
    return JsonResponse(dict(request.COOKIES))


def go_elsewhere(request):
    return HttpResponseRedirect("/hello/redirected")


def boom(request):
    raise RuntimeError("django view raised")


urlpatterns = [
    path("hello/<str:name>", hello),
    path("json", echo_json),
    path("form", form),
    path("upload", upload),
    path("stream", stream),
    path("cookie/set", set_cookie),
    path("cookie/get", get_cookie),
    path("redirect", go_elsewhere),
    path("boom", boom),
]

application = get_wsgi_application()
