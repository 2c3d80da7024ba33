from django.apps import AppConfig


class AudiencesConfig(AppConfig):
    name = "audiences"
    verbose_name = "Audiences"

    def ready(self) -> None:
        from audiences.admin_profile import profile_audiences_section
        from audiences.hooks import audience_destinations_register
        from audiences.outbound import AudienceMembers, destinations_of
        from audiences.selectors import PROFILE_AUDIENCES_SQL, profile_audiences
        from destinations.fullsync import members_provider_register
        from profiles.memberships import membership_lookup_register, membership_sql_register
        from profiles.page_sections import PageSection, profile_section_register
        from profiles.services.feed import feed_consumer_register

        membership_lookup_register(lambda profile_id: profile_audiences(profile_id=profile_id))
        membership_sql_register(PROFILE_AUDIENCES_SQL)
        feed_consumer_register("audiences", "audiences.consume_feed")
        members_provider_register(AudienceMembers())  # full syncs of a newly taken audience
        audience_destinations_register(destinations_of)
        profile_section_register(PageSection("audiences", "admin/audiences/profile_audiences.html",
                                             profile_audiences_section))  # fmt: skip
