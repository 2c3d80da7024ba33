from django.apps import AppConfig


class DestinationsConfig(AppConfig):
    name = "destinations"
    verbose_name = "Destinations"
