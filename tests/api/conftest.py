from tests.profiles.conftest import send  # noqa: F401  (the same fixture: post through /v1/batch, run the pipeline)
