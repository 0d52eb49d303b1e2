"""A LeRobot checkpoint as the runtime's ``select_chunk``: Observation -> (L, 16) absolute targets.

``load_policy(path, ...)`` reads a local LeRobot ``pretrained_model`` folder as ``ate_policy train`` writes it
(``config.json`` + ``model.safetensors`` + ``policy_preprocessor.json`` / ``policy_postprocessor.json`` with
their state files, and ``ate_train_config.yaml``), or any LeRobot policy type saved the same way (PI0,
Diffusion, ...):

* the policy class comes from the config's ``type`` through LeRobot's factory; when ``ate_train_config.yaml``
  says ``policy.tiny: true`` the PI0 is built inside ``tiny_pi0_patches(size)`` (the tiny test architecture, of
  the saved ``policy.tiny_size``);
* the saved pre/post-processors are used as saved (normalisation statistics, tokenizer, device), so the
  numbers the policy sees are the ones it was trained on and its outputs are unnormalised exactly as in
  training;
* nothing is downloaded: a hub id is accepted only when it is already in the local Hugging Face cache; the
  weights are checked to have really been loaded (LeRobot's PI0 ``from_pretrained`` returns random weights
  with a printed warning when it cannot read the file).

The wrapper builds the LeRobot observation from the contract: ``observation.state`` (16,), the three
``observation.images.<cam>`` as float (3, H, W) in [0, 1] at the size the checkpoint was trained on (PIL
bilinear, as the bag converter resizes), and the task string. Its output is the postprocessor's: absolute
joint/gripper targets in the contract's order.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import numpy as np
import torch

from ate_description import contract
from ate_description.errors import UserError
from ate_policy.config import ATE_TRAIN_CONFIG, read_train_config
from ate_policy.runtime.acceleration import Acceleration, choose_compiled, plan_acceleration, resolve_device
from ate_policy.runtime.configuration_runtime import BlendConfig, DeviceOptions
from ate_policy.runtime.observation import Observation
from ate_policy.runtime.protocol import RTCRequest

log = logging.getLogger(__name__)

PRE_FILE = "policy_preprocessor.json"
POST_FILE = "policy_postprocessor.json"
# Policy types whose config has PI0's `dtype` switch (bf16 weights with float32 norms / vision, LeRobot's own
# path).
_DTYPE_CONFIG_TYPES = ("pi0", "pi05", "pi0_fast")


# --- locating a checkpoint ----------------------------------------------------------------------------------
def _is_model_dir(p: Path) -> bool:
    return (p / "config.json").is_file() and (p / "model.safetensors").is_file()


def resolve_checkpoint(path_or_id: str | Path) -> Path:
    """The ``pretrained_model`` folder named by a path (that folder, a checkpoint folder holding one, or a
    training run folder) or by a hub id already in the local cache. Never downloads."""
    p = Path(path_or_id).expanduser()
    if p.exists():
        for cand in (p, p / "pretrained_model", p / "checkpoints" / "last" / "pretrained_model",
                     p / "policy" / "checkpoints" / "last" / "pretrained_model"):
            if _is_model_dir(cand):
                return cand
        raise UserError(f"{p} holds no LeRobot checkpoint: expected config.json + model.safetensors in it, "
                        "in pretrained_model/, or in a training run's "
                        "policy/checkpoints/last/pretrained_model/")
    s = str(path_or_id)
    looks_like_hub_id = s.count("/") == 1 and not s.startswith((".", "/", "~")) and ":" not in s
    if looks_like_hub_id:
        try:
            from huggingface_hub import snapshot_download

            cached = Path(snapshot_download(s, local_files_only=True))
        except Exception as e:  # noqa: BLE001  (not in the cache: the hub library raises several types)
            raise UserError(f"checkpoint {s!r} is not a local folder and not in the local Hugging Face "
                            "cache; the runtime never downloads (offline on the robot): fetch it once with "
                            f"`huggingface-cli download {s} --local-dir DIR` and pass DIR") from e
        if _is_model_dir(cached):
            return cached
        raise UserError(f"the cached hub snapshot of {s} ({cached}) has no config.json + model.safetensors")
    raise UserError(f"checkpoint {s} not found")


def _tokenizer_override(model_dir: Path) -> dict:
    """Where a checkpoint moved away from its training run, find the run's offline tokenizer again."""
    cfg = json.loads((model_dir / PRE_FILE).read_text())
    for step in cfg.get("steps", []):
        if step.get("registry_name") != "tokenizer_processor":
            continue
        name = step.get("config", {}).get("tokenizer_name")
        if name and name.startswith("./") and (model_dir / name / "tokenizer.json").is_file():
            # relative to the checkpoint folder: a checkpoint that travels with its tokenizer (the shipped ones)
            return {"tokenizer_processor": {"tokenizer_name": str((model_dir / name).resolve())}}
        if not name or not name.startswith(("/", ".")) or Path(name).exists():
            return {}
        for cand in (model_dir / "tokenizer", *(d / "tokenizer" for d in model_dir.resolve().parents)):
            if (cand / "tokenizer.json").is_file():
                log.warning("tokenizer %s not found; using %s", name, cand)
                return {"tokenizer_processor": {"tokenizer_name": str(cand)}}
        raise UserError(f"the checkpoint's tokenizer folder {name} does not exist (the checkpoint moved "
                        f"without its training run?): copy it to {model_dir / 'tokenizer'}")
    return {}


def ship_checkpoint(model_dir: str | Path, dest: str | Path, provenance: dict | None = None) -> Path:
    """Copy a checkpoint (``pretrained_model``) to ``dest`` as a folder that loads from wherever it lies: its
    offline tokenizer inside it and the saved pre-processor pointing at it relatively (``./tokenizer``);
    ``provenance`` (what trained it) is written beside as ``provenance.json``. Returns ``dest``."""
    import shutil

    model_dir, dest = Path(model_dir), Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(model_dir, dest)
    override = _tokenizer_override(model_dir).get("tokenizer_processor", {})
    cfg = json.loads((dest / PRE_FILE).read_text())
    for step in cfg.get("steps", []):
        if step.get("registry_name") == "tokenizer_processor":
            tok = Path(override.get("tokenizer_name") or step["config"]["tokenizer_name"])
            if not (dest / "tokenizer" / "tokenizer.json").is_file():
                shutil.copytree(tok, dest / "tokenizer", dirs_exist_ok=True)
            step["config"]["tokenizer_name"] = "./tokenizer"
    (dest / PRE_FILE).write_text(json.dumps(cfg, indent=2))
    if provenance is not None:
        (dest / "provenance.json").write_text(json.dumps(provenance, indent=2))
    return dest


@contextlib.contextmanager
def _quiet_stdout():
    """LeRobot's PI0 prints a disclaimer and loading chatter on stdout; keep it for the debug log."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield buf
    if buf.getvalue().strip():
        log.debug("policy loading output:\n%s", buf.getvalue())


def _check_weights_loaded(policy: torch.nn.Module, model_file: Path, max_keys: int = 24) -> None:
    """Compare a spread of tensors with the file: refuse a policy whose weights are not the checkpoint's."""
    from safetensors import safe_open

    params = policy.state_dict()
    with safe_open(str(model_file), framework="pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys() if k in params}
        other = [k for k, shape in shapes.items() if shape != tuple(params[k].shape)]
        if other:
            # LeRobot loads non-strictly: a tensor of another shape is left at its random initial value.
            k = other[0]
            raise UserError(f"{model_file}: {len(other)} tensors have another shape than the network built from "
                            f"the checkpoint's config (e.g. {k}: saved {shapes[k]}, built "
                            f"{tuple(params[k].shape)}); a tiny PI0 needs its policy.tiny_size in "
                            f"{ATE_TRAIN_CONFIG}")
        keys = [k for k in shapes if k not in other]
        if not keys:
            log.warning("could not verify the loaded weights of %s (no key in common: remapped checkpoint)",
                        model_file)
            return
        step = max(1, len(keys) // max_keys)
        differ = []
        for k in keys[::step]:
            saved = f.get_tensor(k)
            got = params[k].detach().cpu()
            if not torch.allclose(got.float(), saved.to(got.dtype).float(), atol=1e-6, rtol=1e-6):
                differ.append(k)
    if differ:
        raise UserError(f"the policy's weights are not those of {model_file} ({len(differ)} checked tensors "
                        f"differ, e.g. {differ[0]}): LeRobot could not load them")


# --- the select_chunk callable ------------------------------------------------------------------------------
class LeRobotChunkPolicy:
    """``select_chunk(obs[, rtc]) -> (L, 16)``: the checkpoint's processors and policy around an
    Observation."""

    def __init__(self, policy, pre, post, *, model_dir: Path, policy_type: str, device: torch.device,
                 accel: Acceleration, image_hw: tuple[int, int], supports_rtc: bool,
                 verify_atol: float | None = None):
        self.policy, self.pre, self.post = policy, pre, post
        self.verify_atol = verify_atol or accel.atol
        self.model_dir, self.policy_type, self.device, self.accel = model_dir, policy_type, device, accel
        self.image_hw = image_hw
        self.supports_rtc = supports_rtc
        cfg = policy.config
        self.image_keys = list(cfg.image_features)
        self.n_obs_steps = int(getattr(cfg, "n_obs_steps", 1) or 1)
        self.chunk_size = getattr(cfg, "chunk_size", None)   # the model's own chunk (PI0 family)
        self._eager = policy.predict_action_chunk
        self._predict = self._eager
        self._autocast = (accel.dtype == "bfloat16" and policy_type not in _DTYPE_CONFIG_TYPES
                          and device.type in ("cuda", "cpu"))
        self._normalizer = next((s for s in getattr(pre, "steps", []) if type(s).__name__ ==
                                 "NormalizerProcessorStep"), None)

    @property
    def info(self) -> dict:
        a = self.accel
        return {"checkpoint": str(self.model_dir), "policy_type": self.policy_type, "device": a.device,
                "dtype": a.dtype, "compile_requested": a.compile, "compile_mode": a.compile_mode,
                "compiled_in_use": a.compiled_in_use, "compile_verify": a.verify, "notes": list(a.notes),
                "image_hw": list(self.image_hw), "supports_rtc": self.supports_rtc}

    # observation -> LeRobot batch (before the preprocessor)
    def raw_batch(self, obs: Observation) -> dict:
        h, w = self.image_hw
        batch = {contract.STATE_KEY: torch.as_tensor(np.asarray(obs.state, np.float32))}
        for key in self.image_keys:
            cam = key.rsplit(".", 1)[-1]
            img = obs.images.get(cam)
            if img is None:
                raise ValueError(f"observation has no image for {cam}")
            if img.shape[:2] != (h, w):
                from PIL import Image

                img = np.array(Image.fromarray(np.ascontiguousarray(img)).resize((w, h), Image.BILINEAR))
            batch[key] = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div_(255.0)
        batch["task"] = obs.task or ""
        return batch

    def _policy_batch(self, batch: dict) -> dict:
        """Policies that read an observation history (Diffusion) get the newest observation repeated
        ``n_obs_steps`` times, as LeRobot fills the history at an episode's first step."""
        if self.policy_type != "diffusion":
            return batch
        out = dict(batch)
        for key, v in batch.items():
            if key.startswith("observation.") and torch.is_tensor(v):
                out[key] = v.unsqueeze(1).expand(v.shape[0], self.n_obs_steps, *v.shape[1:])
        return out

    def normalized_batch(self, obs: Observation) -> dict:
        return self._policy_batch(self.pre(self.raw_batch(obs)))

    def noise(self, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """The initial noise of one chunk (flow matching / diffusion), so compiled and eager can share it."""
        cfg = self.policy.config
        if hasattr(cfg, "max_action_dim") and hasattr(cfg, "chunk_size"):
            shape = (1, cfg.chunk_size, cfg.max_action_dim)
        elif self.policy_type == "diffusion":
            shape = (1, cfg.horizon, cfg.action_feature.shape[0])
        else:
            return None
        return torch.randn(shape, generator=generator, dtype=torch.float32).to(self.device)

    def predict_normalized(self, batch: dict, noise: torch.Tensor | None = None,
                           rtc: RTCRequest | None = None,
                           fn=None) -> torch.Tensor:
        """The policy's chunk in its own (normalised) action space, (1, L, action_dim)."""
        kwargs = {} if noise is None else {"noise": noise}
        if rtc is not None and rtc.leftover is not None and len(rtc.leftover):
            # LeRobot's RTC pads a shorter leftover to the chunk but fails on a longer one.
            left = rtc.leftover[:self.chunk_size] if self.chunk_size else rtc.leftover
            kwargs.update(inference_delay=int(rtc.inference_delay_ticks),
                          prev_chunk_left_over=self._normalize_actions(left),
                          execution_horizon=int(rtc.execution_horizon_ticks))
        ctx = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self._autocast
               else contextlib.nullcontext())
        # no_grad, not inference_mode: real-time chunking differentiates through one denoising step.
        with torch.no_grad(), ctx:
            return (fn or self._predict)(batch, **kwargs)

    def _normalize_actions(self, actions: np.ndarray) -> torch.Tensor:
        from lerobot.processor import TransitionKey, create_transition

        a = torch.as_tensor(np.asarray(actions, np.float32), device=self.device)[None]
        if self._normalizer is None:
            return a
        return self._normalizer(create_transition(action=a))[TransitionKey.ACTION]

    def __call__(self, obs: Observation, rtc: RTCRequest | None = None) -> np.ndarray:
        actions = self.predict_normalized(self.normalized_batch(obs), rtc=rtc)
        out = self.post(actions)
        return out[0].float().cpu().numpy()

    # compile + verification ---------------------------------------------------------------------------------
    def enable_compile(self, example: Observation) -> None:
        """Use ``torch.compile`` of the prediction if it matches eager on ``example`` (same noise), else
        eager."""
        a = self.accel
        if not a.compile:
            return
        compiled = torch.compile(self._eager, mode=a.compile_mode)
        batch = self.normalized_batch(example)
        gen = torch.Generator().manual_seed(0)
        rtc_on = getattr(getattr(self.policy.config, "rtc_config", None), "enabled", False)
        calls = [0]

        def make_args():
            # With real-time chunking every other check runs the guided path (a different compiled graph).
            kwargs = {"noise": self.noise(gen)}
            if rtc_on and calls[0] % 2:
                h = self.policy.config.rtc_config.execution_horizon
                kwargs["rtc"] = RTCRequest(np.zeros((self.chunk_size or h, contract.ACTION_DIM), np.float32),
                                           2, h)
            calls[0] += 1
            return (batch,), kwargs

        def run(fn):
            return lambda b, noise=None, rtc=None: self.predict_normalized(b, noise, rtc=rtc, fn=fn)

        has_noise = self.noise() is not None
        fn, res = choose_compiled(run(self._eager), run(compiled), make_args, self.verify_atol,
                                  self.policy_type,
                                  seed=None if has_noise else 1234, runs=4 if rtc_on else 2)
        a.verify = {"ok": res.ok, "max_abs_err": res.max_abs_err, "atol": self.verify_atol,
                    "detail": res.detail}
        if res.ok:
            self._predict = compiled
            a.compiled_in_use = True
        else:
            a.notes.append(f"torch.compile rejected, eager in use: {res.detail}")


def load_policy(checkpoint: str | Path, device_options: DeviceOptions | None = None, *,
                image_hw: tuple[int, int] | list[int] | None = None, instruction: str = "",
                blending: BlendConfig | None = None) -> LeRobotChunkPolicy:
    """Load a local LeRobot checkpoint as a ``select_chunk`` callable (see the module docstring).

    ``blending.strategy == "rtc"`` switches LeRobot's real-time chunking on (policies that support it).
    ``image_hw`` None = the checkpoint's own input size. ``instruction`` is checked against the tokenizer's
    length limit (a truncated instruction is a different input)."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    opts = device_options or DeviceOptions()
    model_dir = resolve_checkpoint(checkpoint)
    device = resolve_device(opts.device)
    accel = plan_acceleration(opts, device)
    if opts.num_threads:
        torch.set_num_threads(opts.num_threads)
    for note in accel.notes:
        log.info("%s", note)

    try:
        pcfg = PreTrainedConfig.from_pretrained(model_dir)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot read {model_dir / 'config.json'}: {e}") from e
    ptype = pcfg.type
    _check_contract(pcfg, model_dir)
    pcfg.device = str(device)
    if getattr(pcfg, "compile_model", False):
        pcfg.compile_model = False  # compiled here instead, and verified against eager first
    if ptype in _DTYPE_CONFIG_TYPES:
        pcfg.dtype = accel.dtype
    try:
        cls = get_policy_class(ptype)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"{model_dir}: policy type {ptype!r} is not available in this LeRobot install: "
                        f"{e}") from e
    try:  # a plain capability flag of the class (it reads nothing from the instance)
        supports_rtc = bool(cls.supports_rtc(None))
    except Exception:  # noqa: BLE001
        supports_rtc = False
    if blending is not None and blending.strategy == "rtc":
        if not supports_rtc:
            raise UserError(f"blending.strategy rtc: LeRobot's {ptype} has no real-time chunking (PI0, PI05 "
                            "and SmolVLA have); use blend or latest")
        from lerobot.configs import RTCAttentionSchedule
        from lerobot.policies.rtc.configuration_rtc import RTCConfig

        pcfg.rtc_config = RTCConfig(enabled=True, execution_horizon=blending.rtc_execution_horizon,
                                    max_guidance_weight=blending.rtc_max_guidance_weight,
                                    prefix_attention_schedule=RTCAttentionSchedule[
                                        blending.rtc_schedule.upper()])

    from ate_policy.policies.tiny import TinySize, tiny_pi0_patches

    tiny_size = TinySize.saved(read_train_config(model_dir)) if ptype == "pi0" else None
    ctx = contextlib.nullcontext() if tiny_size is None else tiny_pi0_patches(tiny_size)
    with ctx, _quiet_stdout():
        policy = cls.from_pretrained(model_dir, config=pcfg)
    policy.eval()
    _check_weights_loaded(policy, model_dir / "model.safetensors")

    overrides = {"device_processor": {"device": str(device)}, **_tokenizer_override(model_dir)}
    try:
        # LeRobot's own loader: it also reconnects relative-action pre/post steps where a checkpoint uses
        # them.
        pre, post = make_pre_post_processors(pcfg, pretrained_path=str(model_dir),
                                             preprocessor_overrides=overrides,
                                             postprocessor_overrides={"device_processor": {"device": "cpu"}})
    except FileNotFoundError as e:
        raise UserError(f"{model_dir}: the saved processors are missing ({e}); a LeRobot checkpoint needs "
                        f"{PRE_FILE} and {POST_FILE}") from e
    except OSError as e:  # the tokenizer: not found locally, and offline
        raise UserError(f"{model_dir}: cannot load the preprocessor ({e}); its tokenizer must be available "
                        "offline (a local folder or the Hugging Face cache)") from e

    trained_hw = _trained_image_hw(pcfg)
    hw = tuple(int(v) for v in image_hw) if image_hw else trained_hw
    if hw != trained_hw:
        log.warning("images are given to the policy at %s, but it was trained on %s", hw, trained_hw)
    chunker = LeRobotChunkPolicy(policy, pre, post, model_dir=model_dir, policy_type=ptype, device=device,
                                 accel=accel, image_hw=hw, supports_rtc=supports_rtc,
                                 verify_atol=opts.verify_atol)
    if instruction:
        _check_instruction_length(pre, instruction)
    if accel.compile:
        chunker.enable_compile(Observation.dummy(hw, task=instruction or "warm up"))
    return chunker


def _check_contract(pcfg, model_dir: Path) -> None:
    feats = {**pcfg.input_features, **pcfg.output_features}
    state, action = feats.get(contract.STATE_KEY), feats.get(contract.ACTION_KEY)
    if action is None or tuple(action.shape) != (contract.ACTION_DIM,):
        raise UserError(f"{model_dir}: the policy's action is {getattr(action, 'shape', None)}, the data "
                        f"contract's is ({contract.ACTION_DIM},) [{', '.join(contract.ACTION_NAMES[:2])}, "
                        "...]")
    if state is not None and tuple(state.shape) != (contract.STATE_DIM,):
        raise UserError(f"{model_dir}: the policy's observation.state is {tuple(state.shape)}, the data "
                        f"contract's is ({contract.STATE_DIM},)")
    unknown = [k for k in pcfg.image_features if k not in contract.IMAGE_KEYS]
    if unknown:
        raise UserError(f"{model_dir}: the policy wants cameras {unknown}; the cell has "
                        f"{list(contract.IMAGE_KEYS)}")


def _trained_image_hw(pcfg) -> tuple[int, int]:
    shapes = {tuple(f.shape) for f in pcfg.image_features.values()}
    if not shapes:
        return (224, 224)
    c, h, w = sorted(shapes)[0]
    return int(h), int(w)


def _check_instruction_length(pre, instruction: str) -> None:
    for step in getattr(pre, "steps", []):
        tok = getattr(step, "input_tokenizer", None)
        if tok is None:
            continue
        n = len(tok(instruction + "\n")["input_ids"])
        limit = getattr(step, "max_length", None)
        if limit and n > limit:
            log.warning("the instruction is %d tokens, the policy reads %d: it is truncated (%r)", n, limit,
                        instruction)
