"""``load_model``: any supported spec -> a TransformerLens ``TransformerBridge`` over an HF causal LM.

Specs: ``tiny-gpt2`` / ``tiny-pythia`` / ``tiny-gemma`` (random, seeded, offline), ``gemma-3-270m`` and
``smollm2-135m`` (the embedded real models), a local HF folder (``save_pretrained`` output, or a fine-tuning run folder), a
``.gguf`` file, or a hub name (cached or online; offline and uncached fails at once with one line).
"""
from __future__ import annotations

import hashlib

import logging
from pathlib import Path

import torch

from ..errors import ModelNotAvailableError, check_device_map, check_dtype, resolve_device
from ..resources import data_dir, hub_reachable
from .embedded import EMBEDDED, ensure_embedded, embedded_model, is_embedded

_EMBEDDED_NAMES = " / ".join(EMBEDDED)
from .families import family_for

TINY_SEED = 0

# Small random models of the real architectures. Widths are chosen so every graph is a real bipartite
# matrix (d_mlp = 4 d_model) and Gemma keeps grouped-query attention (1 KV head for 4 query heads) and a
# gated MLP; Pythia keeps its fused QKV, partial rotary and parallel residual.
TINY_CONFIGS: dict[str, dict] = {
    "tiny-gpt2": dict(model_type="gpt2", n_layer=4, n_embd=64, n_head=4, n_inner=256, n_positions=256,
                      architectures=["GPT2LMHeadModel"]),
    "tiny-pythia": dict(model_type="gpt_neox", num_hidden_layers=4, hidden_size=64, num_attention_heads=4,
                        intermediate_size=256, max_position_embeddings=256, rotary_pct=0.25,
                        use_parallel_residual=True, architectures=["GPTNeoXForCausalLM"]),
    "tiny-gemma": dict(model_type="gemma3_text", num_hidden_layers=4, hidden_size=64,
                       num_attention_heads=4, num_key_value_heads=1, head_dim=16, intermediate_size=256,
                       max_position_embeddings=256, sliding_window=64,
                       layer_types=["sliding_attention", "full_attention"] * 2,
                       architectures=["Gemma3ForCausalLM"]),
}


def tiny_tokenizer_dir() -> Path:
    """The BPE tokenizer trained on the bundled corpora, shared by the tiny models."""
    return data_dir() / "tokenizer"


def _load_tokenizer(folder: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def build_tiny(name: str, seed: int = TINY_SEED):
    """A randomly initialised HF causal LM of one of ``TINY_CONFIGS`` and its tokenizer, deterministic in
    ``seed``. Returns ``(hf_model, tokenizer)``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if name not in TINY_CONFIGS:
        raise ModelNotAvailableError(f"unknown tiny model '{name}': use one of {', '.join(TINY_CONFIGS)}")
    tok = _load_tokenizer(tiny_tokenizer_dir())
    kwargs = dict(TINY_CONFIGS[name])
    config = AutoConfig.for_model(kwargs.pop("model_type"), vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **kwargs)
    fork_devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    return model.eval(), tok


def resolve_folder(path: Path) -> Path:
    """The HF model folder inside ``path``: itself, or for a fine-tuning run folder its ``final`` model or
    its newest checkpoint (the run-folder layout is ``circuitclust.runfiles``'). Raises
    :class:`ModelNotAvailableError` if none is there."""
    from ..runfiles import model_folder

    folder = model_folder(path)
    if folder is None:
        raise ModelNotAvailableError(
            f"{path} holds no HF model (no config.json, final/ or checkpoints/step-*/): pass a save_pretrained folder")
    return folder


def torch_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """``"float32"`` / ``"bfloat16"`` / ``"float16"`` (or a torch dtype; None = float32) as a ``torch.dtype``;
    raises :class:`~circuitclust.errors.OptionError` for anything else."""
    return getattr(torch, check_dtype(dtype) or "float32")


def _dispatch(model, device_map):
    """Place an already loaded model by ``device_map`` (what ``from_pretrained(device_map=...)`` does while
    loading), for the models circuitclust builds itself."""
    from accelerate import dispatch_model, infer_auto_device_map

    if isinstance(device_map, str):
        device_map = infer_auto_device_map(model, no_split_module_classes=model._no_split_modules)
    return dispatch_model(model, device_map=device_map)


def load_hf(spec: str, *, dtype: str | torch.dtype | None = None, device_map: str | dict | None = None):
    """Load the HF causal LM and tokenizer for ``spec`` without bridging. Returns ``(hf_model, tokenizer,
    bridge_name)``; see the module docstring for the accepted specs.

    ``dtype``: float32 (default), bfloat16 or float16. ``device_map`` (inference only): an accelerate
    placement (``"auto"``, ``"balanced"``, ... or ``{module: device}``) applied while the weights load, so a
    model too big for one GPU is spread over several (blocks stay whole); the model is left where the map puts
    it (otherwise on the CPU, for :func:`bridge` to move)."""
    from transformers import AutoModelForCausalLM

    dtype = torch_dtype(dtype)
    device_map = check_device_map(device_map)
    placed = {} if device_map is None else {"device_map": device_map}
    if spec in TINY_CONFIGS:
        model, tok = build_tiny(spec)
        model = model.to(dtype)
        # the bridge's model name: a real hub name of the family (no hub call is made, the HF model and
        # tokenizer are passed in)
        return (model if device_map is None else _dispatch(model, device_map)), tok, family_for(model.config).example
    if is_embedded(spec):
        spec = str(ensure_embedded(embedded_model(spec).name))
    local = _check_local(spec)
    if local is None:
        return _load_hub(spec, dtype, placed)
    if local.is_file():  # a .gguf file; folders are HF model folders
        try:
            model = AutoModelForCausalLM.from_pretrained(str(local.parent), gguf_file=local.name, dtype=dtype,
                                                         attn_implementation="eager", **placed)
            tok = _load_tokenizer_gguf(local)
        except Exception as e:  # transformers raises many types for a bad GGUF
            raise ModelNotAvailableError(f"cannot read {local} as a GGUF model: {_first_line(e)}") from e
        check_supported(model.config)
        return model, tok, spec
    try:
        model = AutoModelForCausalLM.from_pretrained(str(local), dtype=dtype, attn_implementation="eager", **placed)
        tok = _load_tokenizer(local)
    except Exception as e:  # transformers raises OSError, ValueError, KeyError... for a damaged folder
        raise ModelNotAvailableError(f"cannot load the HF model in {local} ({type(e).__name__}: "
                                     f"{_first_line(e)}): pass a complete save_pretrained folder") from e
    return model, tok, str(local)


def _check_local(spec: str) -> Path | None:
    """For a spec naming a local file or folder: the checked ``.gguf`` file or HF model folder (its
    architecture supported, its tokenizer files present); None for a hub name. Reads no weights; raises
    :class:`ModelNotAvailableError` with what to do."""
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if path.is_dir():
            raise ModelNotAvailableError(f"{path} is a folder, not a GGUF file: pass the .gguf file itself")
        if not path.is_file():
            raise ModelNotAvailableError(f"GGUF file {path} does not exist")
        with open(path, "rb") as f:
            if f.read(4) != b"GGUF":
                raise ModelNotAvailableError(f"cannot read {path} as a GGUF model: it is not a GGUF file (wrong "
                                             "magic bytes)")
        return path
    if path.exists():
        if not path.is_dir():
            raise ModelNotAvailableError(f"{path} is a file: pass an HF model folder, a .gguf file or a hub name")
        folder = resolve_folder(path)
        check_supported(_read_config(folder))
        _check_tokenizer_files(folder)
        return folder
    if spec.startswith((".", "/", "~")):
        raise ModelNotAvailableError(f"model folder {spec} does not exist")
    return None


def check_spec(spec: str) -> None:
    """Cheap checks of a model spec, without reading weights, so that a command fails before any work: the
    name is known, the file or folder exists and holds a supported architecture, a hub name is cached or
    the hub is reachable. Raises :class:`ModelNotAvailableError` (or :class:`UnsupportedModelError`)."""
    spec = str(spec)
    if not spec.strip():
        raise ModelNotAvailableError(f"the model spec is empty: give {_EMBEDDED_NAMES}, {', '.join(TINY_CONFIGS)}, a "
                                     "folder, a .gguf file or a hub name")
    if spec in TINY_CONFIGS or is_embedded(spec):
        return
    if _check_local(spec) is not None:
        return
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(spec, "config.json")
    except Exception:  # a name that is not a valid repo id
        raise ModelNotAvailableError(f"'{spec}' is not a model name, folder or file: use {_EMBEDDED_NAMES}, "
                                     f"{', '.join(TINY_CONFIGS)}, a folder, a .gguf file or a hub name") from None
    if not isinstance(cached, str) and not hub_reachable():
        raise ModelNotAvailableError(_not_cached(spec))


TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


def _check_tokenizer_files(folder: Path) -> None:
    # Without them transformers silently builds an empty tokenizer, and every later error blames the data.
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelNotAvailableError(f"{folder} holds no tokenizer (none of {', '.join(TOKENIZER_FILES)}): save it "
                                     "beside the model with tokenizer.save_pretrained(folder)")


def _not_cached(name: str) -> str:
    return (f"model '{name}' is not in the local Hugging Face cache and the hub is unreachable: download it where "
            f"there is network (`hf download {name} --local-dir DIR`) and pass DIR, or use {_EMBEDDED_NAMES} / "
            "tiny-gpt2 / tiny-pythia / tiny-gemma")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _read_config(folder: Path):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(folder))
    except Exception as e:
        raise ModelNotAvailableError(f"{folder}/config.json is not a readable HF model config ({_first_line(e)}): "
                                     "pass a save_pretrained folder") from e


def check_supported(config) -> None:
    """Raise :class:`UnsupportedModelError` (one line: why, and every supported family) unless circuitclust
    has an adapter for the HF ``config``'s family."""
    family_for(config)


def _load_tokenizer_gguf(path: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def _load_hub(name: str, dtype: torch.dtype, placed: dict):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = dict(dtype=dtype, attn_implementation="eager", **placed)
    try:  # the local HF cache first: no network, no retries
        from transformers import AutoConfig

        check_supported(AutoConfig.from_pretrained(name, local_files_only=True))
        return (AutoModelForCausalLM.from_pretrained(name, local_files_only=True, **kwargs),
                AutoTokenizer.from_pretrained(name, local_files_only=True), name)
    except (OSError, ValueError):
        pass
    if not hub_reachable():
        raise ModelNotAvailableError(_not_cached(name))
    try:
        from transformers import AutoConfig

        check_supported(AutoConfig.from_pretrained(name))
        return (AutoModelForCausalLM.from_pretrained(name, **kwargs), AutoTokenizer.from_pretrained(name), name)
    except (OSError, ValueError) as e:
        raise ModelNotAvailableError(f"cannot load '{name}' from the hub: {_first_line(e)}") from e


def bridge(hf_model, tokenizer, name: str, device: str | torch.device | None = None):
    """Wrap an HF causal LM in a TransformerBridge (in place: the bridge rewires ``hf_model`` and forces
    eager attention). Take any reference outputs from ``hf_model`` before calling this. A model placed by a
    ``device_map`` stays where it is (inputs go to its embedding's device); any other moves to ``device``."""
    from transformer_lens.model_bridge import TransformerBridge

    from .adapter import model_device

    if getattr(hf_model, "hf_device_map", None):
        device = model_device(hf_model)
        hf_model = hf_model.eval()
    else:
        device = resolve_device(device)
        hf_model = hf_model.to(device).eval()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # TransformerLens logs a deprecation notice for short aliases like "gpt2"
    try:
        return TransformerBridge.boot_transformers(name, hf_model=hf_model, tokenizer=tokenizer,
                                                   device=str(device), dtype=next(hf_model.parameters()).dtype)
    finally:
        root.setLevel(level)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return resolve_device(None)


def load_model(spec: str, *, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None,
               device_map: str | dict | None = None):
    """Load ``spec`` and return a ``TransformerBridge`` with hooks (``run_with_cache``, ``run_with_hooks``).

    The HF model is ``bridge.original_model`` (train it, ``save_pretrained`` it); the spec is recorded as
    ``bridge.circuitclust_spec``. ``dtype`` (float32, bfloat16, float16) defaults to float32, ``device`` to
    CUDA if available; ``device_map`` (inference only, instead of ``device``) spreads the model over several
    devices as :func:`load_hf` says. Raises :class:`~circuitclust.errors.ModelNotAvailableError` with a
    one-line reason when it cannot, :class:`~circuitclust.errors.OptionError` for a bad dtype or map.
    """
    torch_dtype(dtype)  # a bad dtype, map or device fails before the model is read
    if check_device_map(device_map, device) is None:
        resolve_device(device)
    hf_model, tok, name = load_hf(str(spec), dtype=dtype, device_map=device_map)
    b = bridge(hf_model, tok, name, device)
    b.circuitclust_spec = str(spec)
    return b


def model_fingerprint(hf: torch.nn.Module) -> str:
    """A short hash of the model's config and of a sample of its weights: the same model gives the same key
    wherever it was loaded from."""
    h = hashlib.sha256(hf.config.to_json_string(use_diff=False).encode())
    with torch.no_grad():
        for _, p in list(hf.named_parameters())[:4]:
            flat = p.detach().float().flatten()
            h.update(flat[:: max(1, flat.numel() // 4096)].cpu().numpy().tobytes())
    return h.hexdigest()[:16]
