from django.apps import AppConfig


class SqlTraitsConfig(AppConfig):
    name = "sqltraits"
    verbose_name = "SQL traits"
