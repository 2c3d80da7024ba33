from django.urls import path

from ingest import views

urlpatterns = [
    path("v1/pixel/<str:method>", views.pixel, name="pixel"),
    path("v1/click", views.click, name="click"),
    path("v1/webhooks/<str:provider>/<int:source_id>", views.webhook, name="webhook"),
    path("v1/<str:path>", views.tracking, name="tracking"),
]
