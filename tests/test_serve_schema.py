"""``hmer serve`` against its own OpenAPI description: schemathesis generates requests from
``/openapi.json`` (valid ones and invalid ones) and checks each answer: never a server error,
a status, content type and body that the description declares. Bounded (a few dozen examples
per mode) and deterministic."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hmer.serve import make_app

pytestmark = pytest.mark.usefixtures("single_thread")

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
BOUNDED = settings(
    max_examples=30,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_answer_is_one_the_api_description_declares(recognizer, mode):
    # beam 1: the model's work is not what is tested here, the answers are.
    schema = schemathesis.openapi.from_asgi("/openapi.json", make_app(recognizer, beam=1))
    paths = {result.ok().path for result in schema.get_all_operations()}
    assert paths == {"/predict", "/predict/image", "/model", "/health"}

    @BOUNDED
    @given(case=schema.as_strategy(generation_mode=mode))
    def answered_as_declared(case):
        case.call_and_validate(checks=CHECKS)

    answered_as_declared()
