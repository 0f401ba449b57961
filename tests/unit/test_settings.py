"""Settings that guard production: the secret phone and ID numbers are encrypted under."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import DEVELOPMENT_PII_SECRET, Settings


@pytest.mark.parametrize(
    "secret",
    [DEVELOPMENT_PII_SECRET, "change-me-to-a-long-random-secret", "too-short-to-be-random"],
    ids=["development", "placeholder", "short"],
)
def test_production_refuses_a_pii_secret_that_is_not_its_own(secret):
    with pytest.raises(ValidationError, match="GRIDLINK_PII_SECRET"):
        Settings(GRIDLINK_ENV="production", GRIDLINK_PII_SECRET=secret)


def test_production_takes_a_random_secret_and_development_its_default():
    secret = "5f0c" * 16  # as `openssl rand -hex 32` prints
    assert (
        Settings(GRIDLINK_ENV="production", GRIDLINK_PII_SECRET=secret).pii_secret.get_secret_value()
        == secret
    )
    assert Settings(GRIDLINK_ENV="development").pii_secret.get_secret_value() == DEVELOPMENT_PII_SECRET
