from django.apps import AppConfig


class IngestConfig(AppConfig):
    name = "ingest"
    verbose_name = "Ingest"

    def ready(self) -> None:
        from ingest.models import Source
        from profiles.sources import source_namer_register

        def names(ids: set[int]) -> dict[int, str]:
            return dict(Source.objects.filter(id__in=ids).values_list("id", "name"))

        source_namer_register(names)
