from django.urls import path

from audiences import api

A = "api/v1/audiences"

urlpatterns = [
    path(A, api.AudiencesView.as_view(), name="api-audiences"),
    path(f"{A}/preview", api.PreviewView.as_view(), name="api-audience-preview"),  # before /<key>
    path(f"{A}/<str:key>", api.AudienceView.as_view(), name="api-audience"),
    path(f"{A}/<str:key>/members", api.MembersView.as_view(), name="api-audience-members"),
    path(f"{A}/<str:key>/history", api.HistoryView.as_view(), name="api-audience-history"),
    path(f"{A}/<str:key>/sizes", api.SizesView.as_view(), name="api-audience-sizes"),
    path(f"{A}/<str:key>/compute", api.ComputeView.as_view(), name="api-audience-compute"),
]
