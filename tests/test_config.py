"""Every config composes and validates; mistakes are errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from evalkit.config import validate
from evalkit.errors import ConfigError
from tests.conftest import CONF_DIR, REPO, compose

GROUPS = ["dataset", "retriever", "reranker", "eval"]
DESIGN_OPTIONS = {
    "dataset": {
        "scifact",
        "nfcorpus",
        "fiqa",
        "arguana",
        "trec-covid",
        "scidocs",
        "quora",
        "msmarco",
        "trec-dl-2019",
        "trec-dl-2020",
        "local",
    },
    "retriever": {"bm25", "minilm", "bge_small", "e5_small"},
    "reranker": {"none", "minilm_l6", "minilm_l12", "bge_m3", "jina_v2", "biencoder"},
}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_design_options_exist():
    for group, expected in DESIGN_OPTIONS.items():
        assert expected <= set(options(group)), group


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_validates(group, option):
    overrides = [f"{group}={option}"]
    required = {
        "local": "dataset.path=/tmp/anywhere",
        "run_file": "retriever.path=/tmp/run.trec",
        "python": "reranker.target=tests.plugin_reranker:make",
        "hub": "dataset.hub_id=mteb/scifact",
        "irds": "dataset.irds_id=beir/scifact/test",
        "http": ["reranker.url=http://localhost:8080", "reranker.model=rerank-v3.5"],
    }
    if option in required:
        extra = required[option]
        overrides += extra if isinstance(extra, list) else [extra]
    config = validate(compose(overrides))
    section = getattr(config, group)
    # the option's own YAML is what was composed: the name it declares (or inherits) is set
    if group == "eval":
        import yaml

        declared = yaml.safe_load((CONF_DIR / group / f"{option}.yaml").read_text())
        assert section.metrics == declared["metrics"]
    else:
        assert section.name == declared_name(group, option), (group, option, section.name)


def declared_name(group: str, option: str) -> str:
    """The ``name:`` an option's YAML sets, following its ``defaults`` parent."""
    import yaml

    data = yaml.safe_load((CONF_DIR / group / f"{option}.yaml").read_text()) or {}
    if "name" in data:
        return data["name"]
    parents = [d for d in data.get("defaults", []) if isinstance(d, str) and d != "_self_"]
    return declared_name(group, parents[0]) if parents else option


def test_named_models_are_real_ids_with_their_settings():
    e5 = validate(compose(["retriever=e5_small"])).retriever
    assert (e5.model, e5.query_prefix, e5.passage_prefix) == (
        "intfloat/e5-small-v2",
        "query: ",
        "passage: ",
    )
    jina = validate(compose(["reranker=jina_v2"])).reranker
    assert jina.trust_remote_code and jina.dtype == "bf16" and jina.max_length == 1024
    for name in ("minilm_l6", "minilm_l12", "bge_m3"):
        assert validate(compose([f"reranker={name}"])).reranker.trust_remote_code is False
    trec = validate(compose(["dataset=trec-dl-2019"])).dataset
    assert trec.relevance_level == 2
    assert validate(compose(["dataset=arguana"])).dataset.exclude_self is True


@pytest.mark.parametrize("path", sorted((REPO / "experiments").glob("*.yaml")))
def test_every_experiment_composes(path: Path):
    validate(compose([f"experiments={path.stem}"]))


def test_misspelled_override_is_refused_by_hydra():
    with pytest.raises(ConfigCompositionException, match=r"max_lenght"):
        compose(["reranker.max_lenght=128"])


def test_added_unknown_key_names_the_key():
    # "+" forces a new key past Hydra; the schema check still refuses it
    with pytest.raises(ConfigError, match=r"reranker.max_lenght"):
        validate(compose(["+reranker.max_lenght=128"]))


def test_local_dataset_without_path_says_what_to_add():
    with pytest.raises(ConfigError, match=r"dataset=local needs a folder.*add dataset.path="):
        validate(compose(["dataset=local"]))


def test_unknown_option_is_refused():
    with pytest.raises(ConfigCompositionException, match=r"reranker/splade"):
        compose(["reranker=splade"])


def test_wrong_type_and_bad_choice_name_the_key():
    with pytest.raises(ConfigCompositionException, match=r"pipeline.depth"):
        compose(["pipeline.depth=deep"])
    with pytest.raises(ConfigError, match=r"reranker.backend='tensorrt'"):
        validate(compose(["reranker.backend=tensorrt"]))


@pytest.mark.parametrize("depth", [0, -3, 1001])
def test_depth_must_fit_the_first_stage(depth):
    with pytest.raises(ConfigError, match=r"pipeline.depth"):
        validate(compose([f"pipeline.depth={depth}"]))


def test_remote_code_only_for_models_configured_for_it():
    with pytest.raises(ConfigError, match=r"allow_remote_code"):
        validate(compose(["reranker.trust_remote_code=true"]))
    validate(compose(["reranker.trust_remote_code=true", "reranker.allow_remote_code=true"]))
    validate(compose(["reranker=jina_v2"]))
