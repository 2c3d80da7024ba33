from django.urls import path

from sqltraits import api

urlpatterns = [
    path("api/v1/sql-traits", api.SqlTraitsView.as_view(), name="api-sql-traits"),
    path("api/v1/sql-traits/<str:key>", api.SqlTraitView.as_view(), name="api-sql-trait"),
    path("api/v1/sql-traits/<str:key>/run", api.RunView.as_view(), name="api-sql-trait-run"),
    path("api/v1/sql-traits/<str:key>/runs", api.RunsView.as_view(), name="api-sql-trait-runs"),
]
