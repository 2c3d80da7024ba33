"""The read APIs: Segment's Profile API (`segment.py`) and our REST API (`rest.py`), both
behind access tokens (`base.py`)."""
