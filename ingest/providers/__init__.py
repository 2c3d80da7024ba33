"""Email providers' webhook bodies to Segment messages: one pure parser per provider."""
