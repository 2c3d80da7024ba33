"""The query vocabulary shared by computed traits and audiences, pure: filters and their
operators (`filters`), SQL fragments (`sql`) and the two dialects they compile to
(`dialects`: PostgreSQL and SQLite), and a plain-Python evaluator of the same semantics
(`reference`), the oracle the compilers are tested against."""
