"""What an evaluation protocol is, declared once per protocol module and read by the runner and the CLI.

Each protocol module (zeroshot.py, retrieval.py, ...) ends with one record,

    PROTOCOL = Protocol(name="zeroshot", help="...", run=_run, add_arguments=_add_arguments,
                        needs_text=True)

and `rils.eval.runner.REGISTRY` lists the records; adding a protocol is one module with its record
plus one line there. `rils eval NAME` gets a sub-command with the common options and the ones
`add_arguments` adds; `run_protocol(loaded, NAME, ...)` loads the splits the record asks for and
calls `run`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Protocol:
    name: str
    help: str
    # run(loaded: LoadedModel, test: EvalDataset, train: EvalDataset | None, *, device, precision,
    #     extract: dict, **options) -> dict with at least "metrics". `precision` is resolved ("bf16"
    #     or "fp32"); `extract` holds the feature-extraction options (batch_size, num_workers,
    #     progress and, when `uses_feature_cache`, use_cache, cache_dir, model_id); `options` are
    #     the protocol's own (its command-line options, without the dashes).
    run: Callable[..., dict]
    # add_arguments(group): adds the protocol's own options with `group.add_argument(...)`.
    add_arguments: Callable[[Any], None]
    needs_text: bool = False          # needs a text tower (the model's tokenizer)
    needs_train: bool = False         # loads a train split besides the evaluated one
    uses_feature_cache: bool = True   # one cached feature vector per image (features.image_features)
    dataset_kind: str = "classification"   # what load_dataset reads: "classification" or "retrieval"
    # cli_options(options) -> options: parsed command-line values -> `run`'s keyword arguments.
    cli_options: Callable[[dict], dict] | None = None
    # resolve_options(model, options) -> options: fills defaults that depend on the model (e.g. τ1
    # from the checkpoint); the result is what `run` gets and what the record's "settings" show.
    resolve_options: Callable[[Any, dict], dict] | None = None
    # load_split(dataset, split, **options) -> dataset: for protocols whose data has its own layout
    # (the dense ones: ADE20K, COCO); replaces load_dataset. It gets the protocol's options too
    # (e.g. --train-json) and ignores those it does not use. The dataset has `split`, `cache_id`
    # and `skipped` like an EvalDataset.
    load_split: Callable[..., Any] | None = None
