from django.http import HttpResponse
from django.urls import path, re_path


def view(request, **kwargs):  # never called: only resolve() is used
    return HttpResponse("")


urlpatterns = [
    path("articles/<int:year>/<slug:slug>-<int:id>/", view, name="article"),
    path("shop/items/<int:pk>/", view, name="product"),
    re_path(r"^legacy/(?P<id>[0-9]+)\.html$", view, name="legacy_page"),
    path("about/", view, name="about"),
]
