from django.apps import AppConfig


class AudiencesConfig(AppConfig):
    name = "audiences"
    verbose_name = "Audiences"

    def ready(self) -> None:
        from audiences.selectors import profile_audiences
        from profiles.memberships import membership_lookup_register
        from profiles.services.feed import feed_consumer_register

        membership_lookup_register(lambda profile_id: profile_audiences(profile_id=profile_id))
        feed_consumer_register("audiences", "audiences.consume_feed")
