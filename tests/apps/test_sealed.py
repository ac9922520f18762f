"""Stored secrets are sealed with SECRETS_KEY: unreadable without it, tamper-evident, rotatable."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from iot.published_secrets import PUBLISHED, published_secrets_problem
from iot.sealed import SealError, SecretBox, key_problem, masked
from iot.settings import SecretsKeySettings, TrackerSettings

URL = "tgram://123456:ABC-telegram-bot-token/987654"


def test_a_sealed_secret_opens_only_with_its_key_and_never_shows_the_plaintext() -> None:
    box = SecretBox([Fernet.generate_key().decode()])
    sealed = box.seal(URL)
    assert URL not in sealed and "telegram" not in sealed
    assert box.open(sealed) == URL
    with pytest.raises(SealError, match="not in SECRETS_KEY"):
        SecretBox([Fernet.generate_key().decode()]).open(sealed)


def test_an_altered_row_fails_to_open_instead_of_yielding_other_text() -> None:
    box = SecretBox([Fernet.generate_key().decode()])
    sealed = box.seal(URL)
    tampered = sealed[:-6] + ("A" if sealed[-6] != "A" else "B") + sealed[-5:]
    with pytest.raises(SealError):
        box.open(tampered)


def test_rotation_new_key_first_opens_old_values_and_reseals_them() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed_old = SecretBox([old]).seal(URL)
    rotating = SecretBox.from_setting(f"{new}, {old}")
    assert rotating.open(sealed_old) == URL
    resealed = rotating.reseal(sealed_old)
    assert SecretBox([new]).open(resealed) == URL
    with pytest.raises(SealError):
        SecretBox([new]).open(sealed_old)


def test_a_bad_key_setting_names_the_setting_and_how_to_make_one() -> None:
    assert key_problem("") and "generate one" in key_problem("")
    problem = key_problem(f"{Fernet.generate_key().decode()},not-a-key")
    assert problem and problem.startswith("key 2 is not a Fernet key") and "Fernet.generate_key()" in problem
    with pytest.raises(ValidationError, match="key 1 is not a Fernet key"):
        SecretsKeySettings(secrets_key="hunter2")


def test_the_published_default_key_is_refused_unless_development_is_explicit() -> None:
    default = SecretsKeySettings.model_fields["secrets_key"].default.get_secret_value()
    assert default in PUBLISHED["SECRETS_KEY"]
    settings = TrackerSettings(secrets_key=default, admin_token="own-admin-token-0123456789",
                               database_url="postgresql://iot:own-password@db/iot")
    problem = published_secrets_problem(settings)
    assert problem and problem.startswith("SECRETS_KEY is published") and "Fernet.generate_key()" in problem
    assert published_secrets_problem(settings.model_copy(update={"allow_default_secrets": True})) is None


def test_masked_never_shows_a_short_secret_and_only_the_tail_of_a_long_one() -> None:
    assert masked("short-token") == "••••••••"
    assert masked(URL) == "••••••••" + URL[-4:]
    assert masked(None) is None
