"""Messages of opening model files and choosing a backend: every one a function,
kept beside the stage that raises it. Tests assert against these functions."""

from __future__ import annotations

from nnspec.text import names

EXTRAS = {
    "keras": "keras", "h5": "keras", "onnx": "onnx", "safetensors": "safetensors",
    "safetensors-index": "safetensors",
}  # fmt: skip


def no_file(path: str) -> str:
    return f"model file '{path}' does not exist"


def unknown_file(path: str, kinds) -> str:
    return f"'{path}' is no model file nnspec knows (by its content): it reads {names(kinds)}"


def missing_framework(path: str, kind: str, why: str) -> str:
    return f"'{path}' is a {kind} file, and reading it needs a package that is not installed ({why})"


def extra_hint(kind: str) -> str:
    extra = EXTRAS.get(kind)
    return f"pip install 'nnspec[{extra}]'" if extra else "pip install the framework that wrote it"


def unreadable_file(path: str, kind: str, why: str) -> str:
    return f"cannot read '{path}' as a {kind} file: {why}"


def missing_shard(path: str, shard: str) -> str:
    return f"'{path}' names the shard '{shard}', which is not beside it"


def not_in_shard(path: str, name: str, shard: str) -> str:
    return f"'{path}' puts '{name}' in '{shard}', which does not hold it"


def weights_need_module(path: str, got: str) -> str:
    return f"'{path}' holds weights only, and the factory's model is a {got}: weights load into a torch.nn.Module"


def misfit(missing, unexpected, shapes) -> str:
    """What keeps a set of weights from fitting a model: names missing, unexpected, misshapen."""
    parts = []
    if missing:
        parts.append(f"missing {names(missing)}")
    if unexpected:
        parts.append(f"unexpected {names(unexpected)}")
    if shapes:
        parts.append("wrong shape " + names(f"{k} {a} vs model {b}" for k, a, b in shapes))
    return "; ".join(parts)


def weights_mismatch(path: str, missing, unexpected, shapes) -> str:
    return f"the weights in '{path}' do not fit the factory's model: " + misfit(missing, unexpected, shapes)


def whole_program(path: str, kind: str) -> str:
    return f"'{path}' is a whole program ({kind}), code and weights: it needs no factory"


def whole_program_hint() -> str:
    return "drop model.factory, or give a weights file (safetensors, state_dict) to load into the factory's model"


def weights_only(what: str) -> str:
    """Why a weights-only file cannot run ``what``."""
    return (
        f"a weights-only file has no code to run a {what}; give model.factory too, and the file's weights load into it"
    )


def torchscript_no_hooks(what: str) -> str:
    """Why a TorchScript module cannot give ``what``."""
    return (
        f"a TorchScript module takes no forward hooks, so nnspec cannot read its {what}; "
        "export it with torch.export.save (a .pt2 file) instead"
    )


def exported_attention() -> str:
    return (
        "an exported program runs ATen operations in place of its attention modules, "
        "where nnspec does not read attention weights"
    )
