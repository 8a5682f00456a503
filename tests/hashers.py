"""A password hasher for the tests: PBKDF2 with one iteration.

Every organisation and member a test makes hashes a password; at Django's 1,000,000 iterations that is about
half a second of CPU each. The hash keeps the standard ``pbkdf2_sha256$<iterations>$...`` form, so the
servers and workers the tests start (which run the default hashers) verify it as they would any other.
"""

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class OneIterationPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    iterations = 1
