from django.apps import AppConfig


class ProfilesConfig(AppConfig):
    name = "profiles"
    verbose_name = "Profiles"

    def ready(self) -> None:
        from profiles import admin_computed, admin_tokens  # noqa: F401  (register the computed trait and token admins)
        from profiles.services.feed import feed_consumer_register

        feed_consumer_register("computed_traits", "profiles.consume_feed")
