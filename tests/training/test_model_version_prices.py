"""Engineers rename model versions and set their prices (API PATCH and admin), through one service;
nothing that answered an evaluation changes."""
import pytest
from django.urls import reverse

from tests.support.clients import client_for
from tests.support.factories import EngineerFactory, ReviewerFactory, tiny_base_model, unloadable_base_model
from training.model_versions import prompted_model_version
from training.models import ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def version():
    base = unloadable_base_model()
    return ModelVersion.objects.create(name="prompted", kind="prompted_base", base_model=base,
                                       system_prompt="Be brief.")


def test_an_engineer_sets_prices_and_clears_one_over_the_api(version):
    client = client_for(EngineerFactory())
    url = f"/api/v1/model-versions/{version.pk}/"
    response = client.patch(url, {"name": "prompted base", "price_per_million_input_tokens": 0.15,
                                  "price_per_million_output_tokens": 0.6}, format="json")
    assert response.status_code == 200, response.content
    version.refresh_from_db()
    assert (version.name, version.price_per_million_input_tokens, version.price_per_million_output_tokens) == (
        "prompted base", 0.15, 0.6)
    assert client.patch(url, {"price_per_million_output_tokens": None}, format="json").status_code == 200
    version.refresh_from_db()
    assert version.price_per_million_output_tokens is None and version.price_per_million_input_tokens == 0.15
    assert version.system_prompt == "Be brief."  # what answered stays what it was
    assert client.put(url, {"name": "x"}, format="json").status_code == 405


@pytest.mark.parametrize("body, field", [
    ({"price_per_gpu_hour": -1}, "price_per_gpu_hour"),
    ({"price_per_gpu_hour": True}, "price_per_gpu_hour"),
    ({"price_per_gpu_hour": 1e308}, "price_per_gpu_hour"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
])
def test_bad_prices_and_names_are_refused_naming_the_field(version, body, field):
    response = client_for(EngineerFactory()).patch(f"/api/v1/model-versions/{version.pk}/", body, format="json")
    assert response.status_code == 400 and field in response.content.decode()
    version.refresh_from_db()
    assert version.name == "prompted" and version.price_per_gpu_hour is None


def test_reviewers_cannot_change_versions(version):
    response = client_for(ReviewerFactory()).patch(f"/api/v1/model-versions/{version.pk}/", {"name": "x"},
                                                   format="json")
    assert response.status_code == 403


def test_the_admin_form_sets_prices_through_the_same_rule(client, version):
    client.force_login(EngineerFactory())
    url = reverse("admin:training_modelversion_change", args=[version.pk])
    form = {"name": "prompted", "price_per_gpu_hour": "2.5", "price_per_million_input_tokens": "",
            "price_per_million_output_tokens": ""}
    assert client.post(url, form).status_code == 302
    version.refresh_from_db()
    assert version.price_per_gpu_hour == 2.5
    refused = client.post(url, {**form, "price_per_gpu_hour": "1e308"})
    assert refused.status_code == 200 and "price_per_gpu_hour must be a non-negative number below 1e+09" in \
        refused.content.decode()
    version.refresh_from_db()
    assert version.price_per_gpu_hour == 2.5
    page = client.get(url).content.decode()
    assert 'name="system_prompt"' not in page and 'name="base_url"' not in page  # read-only


def test_model_versions_cannot_be_added_or_their_prompt_changed(superuser_client, tiny_model_dir):
    version, _ = prompted_model_version(tiny_base_model(tiny_model_dir), "Be brief.", by=EngineerFactory())
    assert superuser_client.get(reverse("admin:training_modelversion_add")).status_code == 403
    superuser_client.post(reverse("admin:training_modelversion_change", args=[version.pk]),
                          {"name": "renamed", "system_prompt": "Answer in French."})
    version.refresh_from_db()
    assert (version.name, version.system_prompt) == ("renamed", "Be brief.")


@pytest.mark.parametrize("raw", ['{"price_per_gpu_hour": NaN}', '{"price_per_gpu_hour": "Infinity"}',
                                 '{"price_per_gpu_hour": "NaN"}', '{"price_per_gpu_hour": 1e999}',
                                 '{"name": "a\\u0000b"}', '{"name": "a\\ud800b"}'])
def test_non_finite_prices_and_unstorable_names_are_a_400(raw):
    version = ModelVersion.objects.create(name="v", kind="prompted_base", base_model=unloadable_base_model())
    response = client_for(EngineerFactory()).generic("PATCH", f"/api/v1/model-versions/{version.pk}/", raw,
                                                     content_type="application/json")
    assert response.status_code == 400
    version.refresh_from_db()
    assert (version.name, version.price_per_gpu_hour) == ("v", None)


def test_a_patch_never_changes_what_answered():
    version = ModelVersion.objects.create(name="v", kind="prompted_base", base_model=unloadable_base_model(),
                                          system_prompt="p")
    response = client_for(EngineerFactory()).patch(
        f"/api/v1/model-versions/{version.pk}/", {"system_prompt": "x", "kind": "lora_adapter", "few_shot": [[1]],
                                                  "adapter_path": "/x", "base_url": "http://e/v1"}, format="json")
    assert response.status_code == 200
    version.refresh_from_db()
    assert (version.system_prompt, version.kind, version.few_shot, version.adapter_path, version.base_url) == (
        "p", "prompted_base", [], "", "")
