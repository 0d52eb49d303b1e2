"""``ate_policy train``: the whole ATE pipeline (docs/architecture.md (workflows, ATE as implemented), paper appendix F Alg. 1-3).

    Stage 1  pre-training action InfoVAE + latent statistics   (ate_policy.vae.train.train_stage)
    Stage 2  adaptation InfoVAE aligned by the reverse KL       (ate_policy.vae.train.train_stage)
    Stage 3  policy fine-tuning (LeRobot PI0 or Diffusion) steered by the latent guidance of the frozen Stage-2 encoder

Each stage is skipped when its output is complete and resumed when it was interrupted, both only when the stage
folder's ``fingerprint.json`` (its config section without length/logging/paths/device, plus digests of its input
data: ``ate_policy.provenance``) matches this run; otherwise the run refuses before writing anything, or with
``--fresh`` retrains that stage and what depends on it. The run folder::

    train_config.yaml                  the config of the latest run that passed those checks
    bags_dataset/                      with ``bags.paths``: the bags converted to LeRobot v3.0 (cached on content)
    vae_stage1/  vae_stage2/           the two InfoVAE stages (their own layout, see ate_policy.vae.train)
    policy/
      checkpoints/<step>/pretrained_model/   LeRobot layout: config.json, model.safetensors, processors (loads with
                                             plain LeRobot PI0Policy / DiffusionPolicy.from_pretrained)
      checkpoints/<step>/training_state/     optimizer, scheduler, RNG, step (LeRobot's format)
      checkpoints/last                       -> newest complete checkpoint
      metrics.jsonl                          one line per logged step (loss, guidance norms, clamped fraction, s/step)
      tensorboard/                           the same, for TensorBoard
      fingerprint.json                       what the stage is computed from
      summary.json                           written last: the stage is complete (fingerprint, versions, commit)

Multi-GPU: ``accelerate launch [--num_processes N] -m ate_policy.cli train --config ...``. ``batch_size`` is the
total over all processes; each process reads its own slice of every global batch (a fixed, seeded order per
epoch), so a resumed run reads exactly the batches the interrupted one would have. The main process converts
bags and trains the VAEs while the others wait outside any collective (``on_main_process_while_others_wait``),
so those hours never count against ``process_group_timeout_s``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import multiprocessing
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ate_policy.config import ATE_TRAIN_CONFIG, dump_yaml, parse_cli, read_train_config
from ate_policy.data.chunks import STD_FLOOR, floored_stats
from ate_policy.data.frame_cache import cache_video_frames
from ate_policy.data.convert import ConvertConfig
from ate_description.errors import UserError
from ate_policy.guidance import GuidanceConfig
from ate_policy.policies.tiny import TinySize
from ate_policy.vae.configuration_vae import DatasetSpec, VAETrainConfig, WandBConfig

log = logging.getLogger(__name__)

POLICY_TYPES = ("pi0", "diffusion")


@dataclass
class PolicySpec:
    # "pi0" (flow matching, the paper's policy) or "diffusion" (LeRobot Diffusion Policy, epsilon prediction).
    type: str = "pi0"
    # Base weights: a local LeRobot `pretrained_model` folder or a hub id (lerobot/pi0_base). None = random init.
    pretrained_path: str | None = None
    # Tiny random architecture (tests, CPU quick start): PI0 through ate_policy.policies.tiny, no download.
    tiny: bool = False
    # With tiny (PI0): the network's shape (width, depth, vision tower, image input); saved with the checkpoint,
    # which loads with it. The default is the 0.7 MB test network.
    tiny_size: TinySize = field(default_factory=TinySize)
    # Action chunk length L (pi0's chunk_size / diffusion's horizon); Stage 2's chunk_len follows it.
    chunk_size: int = 20
    n_action_steps: int | None = None
    # Denoising steps per predicted chunk (PI0's num_inference_steps, Diffusion's); saved with the checkpoint, so
    # deployment uses it. None = the model's default (PI0 10, the tiny configs 2 or 4: enough for tests, too coarse
    # for smooth motion).
    num_inference_steps: int | None = None
    # PI0 only: the tokenizer (hub id or local folder); None = PaliGemma's from the hub, or the tiny one when tiny.
    tokenizer: str | None = None
    # PI0 only: "bfloat16" halves memory on the GPU (the paper's runs); "float32" on CPU.
    dtype: str = "float32"
    freeze_vision_encoder: bool = False
    train_expert_only: bool = False
    gradient_checkpointing: bool = False

    def __post_init__(self):
        if self.type not in POLICY_TYPES:
            raise ValueError(f"policy.type must be one of {POLICY_TYPES}, got {self.type!r}")
        if self.chunk_size < 1:
            raise ValueError(f"policy.chunk_size must be >= 1, got {self.chunk_size}")
        if self.num_inference_steps is not None and self.num_inference_steps < 1:
            raise ValueError(f"policy.num_inference_steps must be >= 1 or null, got {self.num_inference_steps}")


@dataclass
class PolicyOptim:
    # None = the LeRobot preset of the policy (pi0: AdamW 2.5e-5, cosine decay with warmup; diffusion: Adam 1e-4).
    lr: float | None = None
    warmup_steps: int | None = None
    # Gradient-norm clip; None = the preset's (pi0: 1.0).
    grad_clip_norm: float | None = None


@dataclass
class BagSource:
    # rosbag2 bags (MCAP or sqlite3 folders) to fine-tune on instead of `dataset`: converted once, cached on their
    # content and the mapping below, into <output_dir>/bags_dataset (what `ate_policy convert` writes), which then
    # serves as the dataset of Stage 2 and of the policy.
    paths: list[str] = field(default_factory=list)
    # The mapping (topics, episode boundaries, task, rate, freshness, image size): every ConvertConfig field,
    # defaults as ate_policy/configs/convert_default.yaml; `task` must be set.
    convert: ConvertConfig = field(default_factory=ConvertConfig)


@dataclass
class ATETrainConfig:
    output_dir: str = "outputs/ate"
    # The adaptation dataset (LeRobot v3.0) the policy is fine-tuned on; Stage 2 uses it too unless set there.
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    # ... or rosbag2 bags, converted (cached) into a dataset before the stages run.
    bags: BagSource = field(default_factory=BagSource)
    policy: PolicySpec = field(default_factory=PolicySpec)
    policy_optim: PolicyOptim = field(default_factory=PolicyOptim)
    guidance: GuidanceConfig = field(default_factory=GuidanceConfig)
    # The two InfoVAE stages; their output_dir/stage/stage1_dir are set by the pipeline (under output_dir).
    vae_stage1: VAETrainConfig = field(default_factory=lambda: VAETrainConfig(stage="pretrain"))
    vae_stage2: VAETrainConfig = field(default_factory=lambda: VAETrainConfig(stage="adapt"))
    # A finished Stage-1 run to reuse (e.g. one trained once on the pre-training mixture); None = train it here.
    stage1_dir: str | None = None
    steps: int = 120_000
    # Total over all processes (the paper: 48 = 8 GPUs x 6).
    batch_size: int = 48
    save_every: int = 5000
    log_every: int = 10
    seed: int = 1000
    num_workers: int = 4
    # Decode the dataset's videos once into memory (uint8) when they fit in this many GiB, instead of seeking and
    # decoding every sample's frames at every step (ate_policy.data.frame_cache; the same items, much faster on a
    # CPU). 0 = never.
    cache_frames_gib: float = 4.0
    # "auto" = what Accelerate picks (CUDA when available); "cpu" forces the CPU.
    device: str = "auto"
    # Accelerate mixed precision: "no", "bf16" or "fp16".
    mixed_precision: str = "no"
    # Write the dataset indices each process trained on to policy/sample_indices_rank<r>.txt (audits, tests).
    record_sample_indices: bool = False
    # Seconds any collective (barrier, gradient all-reduce) may wait before the run aborts (torch.distributed's
    # process-group timeout, through Accelerate's InitProcessGroupKwargs). Long single-process work (bag
    # conversion, the VAE stages on the main process) never sits in a collective, so this only has to cover a
    # checkpoint save and the slowest step.
    process_group_timeout_s: int = 1800
    wandb: WandBConfig = field(default_factory=WandBConfig)

    def __post_init__(self):
        for name in ("steps", "batch_size", "save_every", "log_every", "process_group_timeout_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def out(self) -> Path:
        return Path(self.output_dir)


# --- stages 1 and 2 ---------------------------------------------------------------------------------------------
def stage_configs(cfg: ATETrainConfig) -> tuple[VAETrainConfig | None, VAETrainConfig]:
    """The two VAE stage configs as this run uses them (paths under output_dir, Stage 2 tied to the policy)."""
    import dataclasses

    s1 = None
    stage1_dir = cfg.stage1_dir
    if stage1_dir is None:
        s1 = dataclasses.replace(cfg.vae_stage1, stage="pretrain", output_dir=str(cfg.out / "vae_stage1"))
        if not s1.datasets:
            raise UserError("vae_stage1.datasets is empty: name the pre-training dataset(s), or set stage1_dir to "
                            "a finished Stage-1 run")
        stage1_dir = s1.output_dir
    # Stage 2 reads the chunks exactly as the policy sees them: same length L, same normalisation mode, and by
    # default the same dataset, so the frozen encoder's input during guidance is in its training distribution.
    norm = "min_max" if cfg.policy.type == "diffusion" else "mean_std"
    s2 = dataclasses.replace(cfg.vae_stage2, stage="adapt", output_dir=str(cfg.out / "vae_stage2"),
                             stage1_dir=stage1_dir, chunk_len=cfg.policy.chunk_size, normalization=norm,
                             datasets=cfg.vae_stage2.datasets or [cfg.dataset])
    return s1, s2


def check_inputs(cfg: ATETrainConfig) -> None:
    """Every dataset folder the run needs exists: otherwise a one-line error naming the config key to set, before
    any stage runs (a shipped recipe's placeholder paths fail here, not hours later)."""
    d = cfg.dataset
    if not cfg.bags.paths:
        if not d.repo_id and not d.root:
            raise UserError("dataset.repo_id / dataset.root not set: name the LeRobot dataset to fine-tune on "
                            "(--dataset.root=DIR --dataset.repo_id=NAME), or rosbag2 bags with --bags.paths")
        if d.root is not None and not Path(d.root).exists():
            raise UserError(f"dataset.root: {d.root} does not exist: set --dataset.root=DIR (and "
                            "--dataset.repo_id=NAME) to the LeRobot dataset to fine-tune on")
    if not cfg.guidance.enable:
        return
    if cfg.stage1_dir is not None:
        if not Path(cfg.stage1_dir).exists():
            raise UserError(f"stage1_dir: {cfg.stage1_dir} does not exist: name a finished Stage-1 run "
                            "(`ate_policy vae pretrain`), or unset it to train Stage 1 from vae_stage1.datasets")
    else:
        if not cfg.vae_stage1.datasets:
            raise UserError("vae_stage1.datasets is empty: name the pre-training dataset(s), or set stage1_dir to "
                            "a finished Stage-1 run")
        for i, ds in enumerate(cfg.vae_stage1.datasets):
            if ds.root is not None and not Path(ds.root).exists():
                raise UserError(f"vae_stage1.datasets[{i}].root: {ds.root} does not exist: point vae_stage1.datasets "
                                "at the pre-training data (--vae_stage1.datasets='[{repo_id: NAME, root: DIR}]'; a "
                                "hub id needs no root), or set --stage1_dir to a finished Stage-1 run")
    for i, ds in enumerate(cfg.vae_stage2.datasets):
        if ds.root is not None and not Path(ds.root).exists():
            raise UserError(f"vae_stage2.datasets[{i}].root: {ds.root} does not exist: fix it, or leave "
                            "vae_stage2.datasets unset to train Stage 2 on the fine-tuning dataset")


def policy_started(policy_dir: Path) -> bool:
    return (policy_dir / "summary.json").exists() or any((policy_dir / "checkpoints").glob("[0-9]*"))


def policy_fingerprint(cfg: ATETrainConfig, s2: VAETrainConfig | None) -> tuple[str, dict]:
    """(fingerprint, document) of the policy stage: the run's config without the VAE sections, paths, length,
    logging and device, plus the fine-tuning dataset's digest and the fingerprint of the Stage 2 steering it."""
    from ate_policy.config import to_dict
    from ate_policy.provenance import config_section, dataset_digest, fingerprint
    from ate_policy.vae.train import stage_fingerprint

    d = cfg.dataset
    inputs = {"dataset": dataset_digest(d.repo_id or Path(d.root).name, d.root, d.action_key),
              "stage2": stage_fingerprint(s2)[0] if cfg.guidance.enable and s2 is not None else None}
    section = config_section(to_dict(cfg), drop=("vae_stage1", "vae_stage2", "stage1_dir", "bags", "dataset"))
    doc = {"config": section, "inputs": inputs}
    return fingerprint(doc), doc


def check_guidance_contract(encoder, stage2_dir: Path, pcfg, ds_meta, dataset_name: str,
                            action_key: str = "action") -> None:
    """The frozen Stage-2 encoder must read the policy's chunks as it read its training chunks: the same
    normalisation mode and stats (rtol 1e-6) for this dataset, action dim, padding size and chunk length
    (``ate_policy.data.chunks`` stores them with the model). Anything else stops with what differs and the fix."""
    import numpy as np

    retrain = ("train Stage 2 on the policy's own dataset and normalisation (leave vae_stage2.datasets unset so "
               "it follows `dataset`) and re-run with --fresh, or delete " + str(stage2_dir.parent))
    meta = getattr(encoder, "meta", {}) or {}
    where = f"the Stage-2 encoder ({stage2_dir})"
    length = pcfg.chunk_size if hasattr(pcfg, "chunk_size") else pcfg.horizon  # PI0 / Diffusion
    if encoder.chunk_len != length:
        raise UserError(f"{where} reads chunks of {encoder.chunk_len} steps, the policy's are {length}: "
                        f"{retrain} (its chunk_len follows policy.chunk_size)")
    padded = getattr(pcfg, "max_action_dim", None)
    if padded is not None and encoder.config.action_dim != padded:
        raise UserError(f"{where} reads actions padded to {encoder.config.action_dim} dims, the policy pads them to "
                        f"{padded} (max_action_dim): set vae_stage2.model.action_dim: {padded} and {retrain}")
    entries = meta.get("normalization") or {}
    if dataset_name in entries:
        name, entry = dataset_name, entries[dataset_name]
    elif len(entries) == 1:
        name, entry = next(iter(entries.items()))
    else:
        raise UserError(f"{where} was trained on {', '.join(entries) or 'no recorded dataset'}, not on the "
                        f"policy's dataset {dataset_name}: {retrain}")
    mode = pcfg.normalization_mapping.get("ACTION")
    mode = getattr(mode, "value", str(mode)).lower()
    if entry["mode"] != mode:
        raise UserError(f"{where} saw {name}'s actions normalised {entry['mode']}, the policy normalises them "
                        f"{mode}: {retrain}")
    real_dim = int(ds_meta.features[action_key]["shape"][0])
    if int(entry["action_dim"]) != real_dim or real_dim > encoder.config.action_dim:
        raise UserError(f"{where} was trained on {entry['action_dim']}-dim actions of {name}, the policy's dataset "
                        f"has {real_dim}: {retrain}")
    if entry["mode"] == "mean_std" and not math.isclose(float(entry.get("std_floor", 0.0)), STD_FLOOR):
        raise UserError(f"{where} normalised {name}'s actions with a std floor of {entry.get('std_floor', 0.0):g} "
                        f"(0 = trained before the floor existed), the policy floors at {STD_FLOOR:g}: {retrain}")
    theirs = ds_meta.stats.get(action_key, {}) if ds_meta.stats else {}
    for key, used in entry["stats"].items():
        if key not in theirs:
            raise UserError(f"the policy's dataset {dataset_name} has no {key!r} stats for {action_key!r}, which "
                            f"Stage 2 normalised with: recompute the dataset's stats, then {retrain}")
        a = np.asarray(used, dtype=np.float64).reshape(-1)
        b = np.asarray(theirs[key], dtype=np.float64).reshape(-1)
        if a.shape != b.shape or not np.allclose(a, b, rtol=1e-6, atol=1e-12):
            rel = (np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-12) if a.shape == b.shape
                   else np.array([np.inf]))
            j = int(np.argmax(rel))
            raise UserError(f"{where} normalised {name}'s actions with other {key!r} stats than the policy's dataset "
                            f"{dataset_name} has (dim {j}: {a[j] if a.size > j else '-'} vs "
                            f"{b[j] if b.size > j else '-'}, relative difference {rel[j]:.1e}; the dataset or its "
                            f"stats changed since Stage 2 was trained): {retrain}")


# --- the policy ---------------------------------------------------------------------------------------------------
def _tiny_context(spec: PolicySpec):
    if spec.type == "pi0" and spec.tiny:
        from ate_policy.policies.tiny import tiny_pi0_patches

        return tiny_pi0_patches(spec.tiny_size)
    return contextlib.nullcontext()


def build_policy_config(spec: PolicySpec, ds_meta, device: str, optim: PolicyOptim | None = None):
    from lerobot.configs import FeatureType
    from lerobot.utils.feature_utils import dataset_to_policy_features

    features = dataset_to_policy_features(ds_meta.features)
    outputs = {k: f for k, f in features.items() if f.type is FeatureType.ACTION}
    inputs = {k: f for k, f in features.items() if f.type is not FeatureType.ACTION}
    if spec.type == "pi0":
        from ate_policy.policies.tiny import tiny_pi0_config

        if spec.tiny:
            pcfg = tiny_pi0_config(chunk_size=spec.chunk_size, input_features=inputs, output_features=outputs,
                                   size=spec.tiny_size)
        else:
            from lerobot.policies.pi0.configuration_pi0 import PI0Config

            pcfg = PI0Config(chunk_size=spec.chunk_size, n_action_steps=spec.chunk_size, dtype=spec.dtype,
                             input_features=inputs, output_features=outputs, push_to_hub=False,
                             freeze_vision_encoder=spec.freeze_vision_encoder,
                             train_expert_only=spec.train_expert_only,
                             gradient_checkpointing=spec.gradient_checkpointing)
    else:
        from ate_policy.policies.tiny import tiny_diffusion_config

        if spec.tiny:
            pcfg = tiny_diffusion_config(horizon=spec.chunk_size, input_features=inputs, output_features=outputs)
        else:
            from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

            pcfg = DiffusionConfig(horizon=spec.chunk_size, n_action_steps=max(1, spec.chunk_size // 2),
                                   input_features=inputs, output_features=outputs, push_to_hub=False)
    if spec.n_action_steps is not None:
        pcfg.n_action_steps = spec.n_action_steps
    if spec.num_inference_steps is not None:
        pcfg.num_inference_steps = spec.num_inference_steps
    pcfg.device = device
    if optim is not None:
        if optim.lr is not None:
            pcfg.optimizer_lr = optim.lr
        if optim.warmup_steps is not None:
            pcfg.scheduler_warmup_steps = optim.warmup_steps
    return pcfg


def build_policy(spec: PolicySpec, pcfg):
    """Our loss-only subclass; base weights from ``spec.pretrained_path`` when given."""
    from ate_policy.policies.diffusion_ate import DiffusionATEPolicy
    from ate_policy.policies.pi0_ate import PI0ATEPolicy

    cls = PI0ATEPolicy if spec.type == "pi0" else DiffusionATEPolicy
    with _tiny_context(spec):
        if spec.pretrained_path is None:
            return cls(pcfg)
        local = Path(spec.pretrained_path)
        if local.exists() and not (local / "model.safetensors").exists():
            # PI0's from_pretrained silently returns random weights when it finds no file: refuse instead.
            raise UserError(f"policy.pretrained_path {local} holds no model.safetensors (a LeRobot "
                            "`pretrained_model` folder is expected)")
        _check_tiny_size(spec, local)
        return cls.from_pretrained(spec.pretrained_path, config=pcfg)


def _check_tiny_size(spec: PolicySpec, pretrained: Path) -> None:
    """A tiny PI0 fine-tuned from a tiny checkpoint must be built with the checkpoint's shape."""
    if not (spec.type == "pi0" and spec.tiny):
        return
    size = TinySize.saved(read_train_config(pretrained))   # None without a saved config (not a tiny checkpoint)
    if size is not None and size != spec.tiny_size:
        raise UserError(f"policy.tiny_size {spec.tiny_size} differs from the shape of the tiny checkpoint "
                        f"{pretrained} ({size}): set policy.tiny_size to the checkpoint's")


def local_tokenizer_dir(spec: PolicySpec, out: Path) -> Path | None:
    """The tokenizer folder on disk this run's PI0 processor uses (the tiny one, or a local ``tokenizer``), if any."""
    if spec.type != "pi0":
        return None
    cand = Path(spec.tokenizer) if spec.tokenizer else (out / "tokenizer" if spec.tiny else None)
    return cand if cand is not None and (cand / "tokenizer.json").is_file() else None


def build_processors(spec: PolicySpec, pcfg, stats, out: Path):
    """LeRobot's pre/post-processors for the policy, with an offline tokenizer where one is needed."""
    from lerobot.policies.factory import make_pre_post_processors

    if spec.type != "pi0":
        return make_pre_post_processors(pcfg, dataset_stats=stats)
    from unittest import mock

    import lerobot.policies.pi0.processor_pi0 as proc

    tokenizer = spec.tokenizer
    if tokenizer is None and spec.tiny:
        from ate_policy.policies.tiny import tiny_tokenizer

        own = out / "tokenizer"
        inherited = Path(spec.pretrained_path) / "tokenizer" if spec.pretrained_path else None
        if inherited is not None and (inherited / "tokenizer.json").is_file() and \
                not (own / "tokenizer.json").is_file():
            # fine-tuning a tiny checkpoint: the token ids its weights learned, not a tokenizer built anew
            shutil.copytree(inherited, own, dirs_exist_ok=True)
        tokenizer = str(tiny_tokenizer(own).resolve())
    if tokenizer is None:
        return make_pre_post_processors(pcfg, dataset_stats=stats)
    step_cls = proc.TokenizerProcessorStep

    def with_our_tokenizer(**kw):
        return step_cls(**{**kw, "tokenizer_name": tokenizer})

    # processor_pi0 names the PaliGemma tokenizer of the hub; the saved processor records ours instead.
    with mock.patch.object(proc, "TokenizerProcessorStep", with_our_tokenizer):
        return make_pre_post_processors(pcfg, dataset_stats=stats)


# --- data ---------------------------------------------------------------------------------------------------------
class GlobalBatchSampler(torch.utils.data.Sampler):
    """Yields this process's slice of each global batch, in a seeded order per epoch, starting at ``start_step``.

    The order depends only on (seed, epoch), so every process agrees on the global batch without communicating
    and a resumed run continues with the very batch the interrupted one would have read next.
    """

    def __init__(self, n: int, global_batch: int, rank: int, world: int, seed: int, start_step: int = 0):
        if global_batch % world:
            raise UserError(f"batch_size {global_batch} must be divisible by the number of processes {world}")
        if n < global_batch:
            raise UserError(f"the dataset has {n} samples, fewer than batch_size {global_batch}")
        self.n, self.global_batch, self.rank, self.world = n, global_batch, rank, world
        self.seed, self.step = seed, start_step
        self.per_epoch = n // global_batch
        self.local = global_batch // world

    def __iter__(self):
        while True:
            epoch, k = divmod(self.step, self.per_epoch)
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
            start = k * self.global_batch + self.rank * self.local
            self.step += 1
            yield order[start:start + self.local].tolist()

    def __len__(self):  # endless; DataLoader only needs this for len()
        return 2**62


def make_dataset(cfg: ATETrainConfig, pcfg):
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata

    d = cfg.dataset
    if not d.repo_id and not d.root:
        raise UserError("dataset.repo_id / dataset.root not set: name the LeRobot dataset to fine-tune on")
    try:
        meta = LeRobotDatasetMetadata(d.repo_id or Path(d.root).name, root=d.root)
    except Exception as e:  # LeRobot raises several types for a missing dataset
        raise UserError(f"cannot open dataset {d.repo_id or ''} {d.root or ''}: {e}") from e
    return LeRobotDataset(d.repo_id or Path(d.root).name, root=d.root,
                          delta_timestamps=resolve_delta_timestamps(pcfg, meta)), meta


# --- checkpoints --------------------------------------------------------------------------------------------------
def latest_policy_checkpoint(policy_dir: Path) -> Path | None:
    from lerobot.utils.constants import TRAINING_STATE_DIR

    last = policy_dir / "checkpoints" / "last"
    if last.exists() and (last / TRAINING_STATE_DIR / "training_step.json").exists():
        return last.resolve()
    cands = sorted(p for p in (policy_dir / "checkpoints").glob("[0-9]*")
                   if (p / TRAINING_STATE_DIR / "training_step.json").exists())
    return cands[-1] if cands else None


def save_policy_checkpoint(policy_dir: Path, step: int, policy, optimizer, scheduler, pre, post,
                           cfg: ATETrainConfig, world: int) -> Path:
    from lerobot.common.train_utils import save_training_state, update_last_checkpoint
    from lerobot.utils.constants import PRETRAINED_MODEL_DIR

    root = policy_dir / "checkpoints"
    tmp, dest = root / f".tmp-{step:08d}", root / f"{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save_pretrained(tmp / PRETRAINED_MODEL_DIR)
    pre.save_pretrained(tmp / PRETRAINED_MODEL_DIR)
    post.save_pretrained(tmp / PRETRAINED_MODEL_DIR)
    tokenizer = local_tokenizer_dir(cfg.policy, cfg.out)
    if tokenizer is not None:
        # The processor names the tokenizer by its path in this run: a checkpoint copied to the robot PC alone
        # would lose it. A copy inside pretrained_model/ travels with it (the runtime's loader looks there).
        shutil.copytree(tokenizer, tmp / PRETRAINED_MODEL_DIR / "tokenizer")
    dump_yaml(cfg, tmp / PRETRAINED_MODEL_DIR / ATE_TRAIN_CONFIG)
    save_training_state(tmp, step, optimizer, scheduler, num_processes=world, batch_size=cfg.batch_size // world)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)  # a numbered checkpoint exists only once it is complete
    update_last_checkpoint(dest)
    return dest


# --- stage 3 ------------------------------------------------------------------------------------------------------
def train_policy(cfg: ATETrainConfig, stage2_final: Path | None, accelerator, progress: bool = True,
                 fresh: bool = False, s2: VAETrainConfig | None = None) -> Path:
    """Stage 3. ``s2`` is the Stage-2 config steering it (its fingerprint keys this stage); ``fresh`` retrains a
    policy folder made by another config or other data instead of refusing."""
    from lerobot.common.train_utils import load_training_state
    from lerobot.utils.constants import PRETRAINED_MODEL_DIR

    from ate_policy.provenance import claim_stage, provenance
    from ate_policy.vae.modeling_vae import InfoVAE

    policy_dir = cfg.out / "policy"
    summary_file = policy_dir / "summary.json"
    is_main, rank, world = accelerator.is_main_process, accelerator.process_index, accelerator.num_processes
    if cfg.guidance.enable and s2 is None:
        s2 = stage_configs(cfg)[1]
    fp, doc = policy_fingerprint(cfg, s2)
    # Every process checks (same files, same answer, one clear error each); only the main one deletes or writes.
    claim_stage(policy_dir, doc, "the policy stage", policy_started, fresh, write=is_main)
    accelerator.wait_for_everyone()
    if summary_file.exists():
        summary = json.loads(summary_file.read_text())
        done = summary.get("steps")
        if done is not None and cfg.steps > done:
            # steps is outside the fingerprint (a resumed run may change it), so a finished run is never extended
            final = summary.get("final_checkpoint", "<its final checkpoint>")
            log.warning("policy stage already complete in %s after %d steps: this run asks for %d but is not "
                        "extended (its learning-rate schedule ended); train further from its weights in a new "
                        "--output_dir with --policy.pretrained_path=%s, or retrain this one with --fresh",
                        policy_dir, done, cfg.steps, final)
        else:
            log.info("policy stage already complete in %s: skipped", policy_dir)
        return policy_dir
    device = accelerator.device

    torch.manual_seed(cfg.seed)  # the same initial weights on every process
    ds_meta = _meta_only(cfg)
    pcfg = build_policy_config(cfg.policy, ds_meta, device.type, cfg.policy_optim)
    encoder = None
    if cfg.guidance.enable:
        encoder = InfoVAE.from_pretrained(stage2_final).to(device)
        check_guidance_contract(encoder, Path(stage2_final), pcfg, ds_meta,
                                cfg.dataset.repo_id or str(cfg.dataset.root), cfg.dataset.action_key)
    dataset, meta = make_dataset(cfg, pcfg)
    # loader workers share the cache only when forked (a spawned worker would get the dataset pickled, cache and all)
    start = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
    budget = cfg.cache_frames_gib if cfg.num_workers == 0 or start == "fork" else 0
    cached = cache_video_frames(dataset, budget, progress and is_main)
    if cached and is_main:
        print(f"policy: video frames decoded into memory ({cached / 2**30:.2f} GiB)", flush=True)
    policy = build_policy(cfg.policy, pcfg)
    # std floored (ate_policy.data.chunks.floored_stats): an idle arm's constant dims must not blow up to ~100
    pre, post = build_processors(cfg.policy, pcfg, floored_stats(meta.stats), cfg.out)
    policy.attach_guidance(encoder, cfg.guidance)

    optimizer = pcfg.get_optimizer_preset().build(policy.get_optim_params())
    sched_cfg = pcfg.get_scheduler_preset()
    scheduler = sched_cfg.build(optimizer, cfg.steps) if sched_cfg is not None else None
    clip = cfg.policy_optim.grad_clip_norm if cfg.policy_optim.grad_clip_norm is not None else \
        getattr(pcfg, "optimizer_grad_clip_norm", None)

    step = 0
    ckpt = latest_policy_checkpoint(policy_dir)
    if ckpt is not None:
        from safetensors.torch import load_file

        policy.load_state_dict(load_file(ckpt / PRETRAINED_MODEL_DIR / "model.safetensors", device=str(device)))
        step, optimizer, scheduler = load_training_state(ckpt, optimizer, scheduler)
        if is_main:
            print(f"policy: resuming from step {step} ({ckpt})", flush=True)
    if is_main:
        policy_dir.mkdir(parents=True, exist_ok=True)
        _truncate_metrics(policy_dir / "metrics.jsonl", step)

    sampler = GlobalBatchSampler(len(dataset), cfg.batch_size, rank, world, cfg.seed, start_step=step)
    # Its own generator: creating the iterator would otherwise draw from the global RNG, so a resumed run (which
    # creates it after restoring the RNG) would draw different noise than the uninterrupted run.
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.num_workers,
                                         pin_memory=device.type == "cuda",
                                         generator=torch.Generator().manual_seed(cfg.seed + rank))
    # The loader is not prepared: GlobalBatchSampler already gives each process its own slice of the batch.
    policy, optimizer = accelerator.prepare(policy, optimizer)
    policy.train()

    writer = _tensorboard(policy_dir) if is_main else None
    wandb_run = _wandb(cfg) if is_main else None
    index_log = (policy_dir / f"sample_indices_rank{rank}.txt").open("a") if cfg.record_sample_indices else None
    metrics = (policy_dir / "metrics.jsonl").open("a") if is_main else None
    from ate_policy.vae.train import step_bar

    bar = step_bar(cfg.steps, step, f"policy ({cfg.policy.type}{' + ATE' if encoder is not None else ''})",
                   progress and is_main)
    it = iter(loader)
    t_run = time.perf_counter()
    first_step = step
    while step < cfg.steps:
        t0 = time.perf_counter()
        batch = next(it)
        if index_log is not None:
            index_log.write(" ".join(str(int(i)) for i in batch["index"]) + "\n")
        batch = pre(batch)
        with accelerator.autocast():
            loss, logs = policy(batch)
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(policy.parameters(), clip) if clip else None
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if scheduler is not None:
            scheduler.step()
        step += 1
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise RuntimeError(f"policy loss became {loss_value} at step {step}; lower policy_optim.lr")
        dt = time.perf_counter() - t0
        if is_main:
            row = {"step": step, "loss": loss_value, "lr": optimizer.param_groups[0]["lr"], "step_time_s": dt,
                   **{k: v for k, v in (logs or {}).items() if k.startswith("guidance_")}}
            if grad_norm is not None:
                row["grad_norm"] = float(grad_norm)
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()
            if step % cfg.log_every == 0 or step == cfg.steps:
                for k, v in row.items():
                    if k != "step":
                        writer.add_scalar(f"policy/{k}", v, step)
                if wandb_run:
                    wandb_run.log({f"policy/{k}": v for k, v in row.items() if k != "step"}, step=step)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", g=f"{row.get('guidance_norm', 0.0):.3f}")
        if step % cfg.save_every == 0 or step == cfg.steps:
            accelerator.wait_for_everyone()
            if is_main:
                save_policy_checkpoint(policy_dir, step, accelerator.unwrap_model(policy), optimizer.optimizer
                                       if hasattr(optimizer, "optimizer") else optimizer, scheduler, pre, post,
                                       cfg, world)
            accelerator.wait_for_everyone()
    bar.close()
    if index_log is not None:
        index_log.close()
    if is_main:
        metrics.close()
        writer.close()
        if wandb_run:
            wandb_run.finish()
        last = latest_policy_checkpoint(policy_dir)
        summary = {"policy": cfg.policy.type, "steps": step, "steps_this_run": step - first_step,
                   "processes": world, "guidance": encoder is not None, "lambda": cfg.guidance.lam,
                   "seconds_this_run": round(time.perf_counter() - t_run, 2),
                   "final_checkpoint": str(last / PRETRAINED_MODEL_DIR), **provenance(fp)}
        summary_file.write_text(json.dumps(summary, indent=2))
    accelerator.wait_for_everyone()
    return policy_dir


def _meta_only(cfg: ATETrainConfig):
    from lerobot.datasets.lerobot_dataset import LeRobotDatasetMetadata

    d = cfg.dataset
    if not d.repo_id and not d.root:
        raise UserError("dataset.repo_id / dataset.root not set: name the LeRobot dataset to fine-tune on")
    try:
        return LeRobotDatasetMetadata(d.repo_id or Path(d.root).name, root=d.root)
    except Exception as e:
        raise UserError(f"cannot open dataset {d.repo_id or ''} {d.root or ''}: {e}") from e


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop rows past the checkpoint we resume from, so the logged curve has each step once."""
    if not path.exists():
        return
    rows = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    path.write_text("".join(r + "\n" for r in rows))


def _tensorboard(out: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(out / "tensorboard"))


def _wandb(cfg: ATETrainConfig):
    if not cfg.wandb.enable:
        return None
    try:
        import wandb
    except ImportError as e:
        raise UserError("wandb.enable=true but wandb is not installed: pip install -e '.[wandb]'") from e
    from ate_policy.config import to_dict

    return wandb.init(project=cfg.wandb.project, entity=cfg.wandb.entity, dir=str(cfg.out), name="ate_policy",
                      config=json.loads(json.dumps(to_dict(cfg), default=str)))


# --- the pipeline -------------------------------------------------------------------------------------------------
def run(cfg: ATETrainConfig, progress: bool = True, fresh: bool = False) -> dict[str, Path]:
    """Every stage in order, skipping complete ones and resuming an interrupted one; returns their folders.

    A stage folder made by another config or other data (``ate_policy.provenance``) is refused before anything is
    written, or with ``fresh`` retrained (with everything that depends on it).
    """
    from datetime import timedelta

    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    from ate_policy.vae.train import train_stage

    check_inputs(cfg)
    # PI0 holds parameters its loss never reaches (the VLM's LM head and final norm): DDP must not wait for them
    # (LeRobot's own trainer does the same). The process-group timeout is explicit (NCCL's default is 10 minutes).
    accelerator = Accelerator(cpu=cfg.device == "cpu", mixed_precision=cfg.mixed_precision,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True),
                                               InitProcessGroupKwargs(
                                                   timeout=timedelta(seconds=cfg.process_group_timeout_s))])

    def main_process_work() -> None:
        """Bag conversion and the two VAE stages (small next to the policy), on the main process only."""
        run_cfg = with_converted_bags(cfg) if cfg.bags.paths else cfg
        s1, s2 = stage_configs(run_cfg) if run_cfg.guidance.enable else (None, None)
        if not fresh:
            _refuse_stale_stages(run_cfg, s1, s2)
        run_cfg.out.mkdir(parents=True, exist_ok=True)
        dump_yaml(run_cfg, run_cfg.out / "train_config.yaml")
        if s1 is not None:
            train_stage(_on_device(s1, accelerator), progress, fresh)
        if s2 is not None:
            train_stage(_on_device(s2, accelerator), progress, fresh)

    on_main_process_while_others_wait(accelerator, main_process_work, cfg.out)
    if cfg.bags.paths:
        cfg = with_converted_bags(cfg, convert=False)
    s1, s2 = stage_configs(cfg) if cfg.guidance.enable else (None, None)
    out: dict[str, Path] = {}
    if s1 is not None:
        out["vae_stage1"] = Path(s1.output_dir)
    if s2 is not None:
        out["vae_stage2"] = Path(s2.output_dir) / "final"
    out["policy"] = train_policy(cfg, out.get("vae_stage2"), accelerator, progress, fresh, s2)
    # Destroy the process group before the interpreter exits: otherwise gloo's worker threads are torn down during
    # finalisation and a finished 2-process CPU run ended with 'terminate called' (exit -6) about one time in four.
    accelerator.end_training()
    return out


def _refuse_stale_stages(cfg: ATETrainConfig, s1: VAETrainConfig | None, s2: VAETrainConfig | None) -> None:
    """Refuse up front (before train_config.yaml is rewritten and before hours of Stage 1) every stage whose
    fingerprint can already be computed and does not match its folder."""
    from ate_policy.provenance import claim_stage
    from ate_policy.vae.train import stage_complete, stage_fingerprint, stage_started

    def check(folder: Path, doc: dict, name: str, started) -> None:
        claim_stage(folder, doc, name, started, fresh=False, write=False)

    if s1 is not None:
        check(s1.out, stage_fingerprint(s1)[1], "the pretrain VAE stage", stage_started)
        if not stage_complete(s1):
            return  # Stage 2's fingerprint needs Stage 1's statistics
    if s2 is not None:
        check(s2.out, stage_fingerprint(s2)[1], "the adapt VAE stage", stage_started)
    check(cfg.out / "policy", policy_fingerprint(cfg, s2)[1], "the policy stage", policy_started)


def on_main_process_while_others_wait(accelerator, work, out: Path, poll_s: float = 2.0) -> None:
    """Run ``work()`` on the main process; the other processes wait for it *outside* any collective.

    A process blocked in a collective (``wait_for_everyone``) longer than the process-group timeout aborts the run
    (NCCL's watchdog; gloo's own timeout), and Stage 1 of the paper's recipe runs for many hours on one GPU. So the
    others poll a marker file the main process writes when the work is done (or failed), and meet it in one
    barrier only afterwards, which returns at once. ``out`` must be the same folder for every process: a quick
    check at the start refuses a multi-machine run whose output_dir is not on a shared filesystem.
    """
    if accelerator.num_processes == 1:
        work()
        return
    import uuid

    from accelerate.utils import broadcast_object_list, gather_object

    token = [uuid.uuid4().hex if accelerator.is_main_process else None]
    broadcast_object_list(token)  # every process is at the start: a short collective
    sync = out / ".sync"
    hello, done, failed = (sync / f"{token[0]}.{k}" for k in ("hello", "done", "failed"))
    if accelerator.is_main_process:
        sync.mkdir(parents=True, exist_ok=True)
        hello.write_text("")
    accelerator.wait_for_everyone()
    blind = [r for r, seen in enumerate(gather_object([hello.exists()])) if not seen]
    if blind:
        raise UserError(f"output_dir {out} is not the same folder for every process (process(es) {blind} cannot "
                        "see what the main process wrote there): a multi-machine run needs output_dir on a "
                        "filesystem shared by all machines")
    if accelerator.is_main_process:
        try:
            work()
        except BaseException as e:
            failed.write_text(f"{type(e).__name__}: {e}")
            raise
        done.write_text("")
    else:
        while not done.exists():
            if failed.exists():
                raise RuntimeError(f"the main process failed ({failed.read_text()}); see its output")
            time.sleep(poll_s)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(sync, ignore_errors=True)


def with_converted_bags(cfg: ATETrainConfig, convert: bool = True) -> ATETrainConfig:
    """``cfg`` with ``dataset`` pointing at the conversion of ``cfg.bags`` (converted, cached, when ``convert``)."""
    import dataclasses

    from ate_policy.data.convert import convert_bags

    root = cfg.out / "bags_dataset"
    if convert:
        cfg.out.mkdir(parents=True, exist_ok=True)
        convert_bags([Path(p) for p in cfg.bags.paths], root, cfg.bags.convert, overwrite=True)
    return dataclasses.replace(cfg, dataset=DatasetSpec(repo_id=cfg.bags.convert.repo_id, root=str(root)))


def _on_device(stage: VAETrainConfig, accelerator) -> VAETrainConfig:
    import dataclasses

    return dataclasses.replace(stage, device=str(accelerator.device)) if stage.device == "auto" else stage


def main(argv: list[str]) -> int:
    # --fresh: retrain the stages whose config or data changed (and what depends on them) instead of refusing.
    fresh = "--fresh" in argv
    if any(a in ("-h", "--help") for a in argv):
        print("ate_policy train --config RECIPE [--fresh] [--key=value ...]\n"
              "  --fresh  retrain the stages whose config or data changed (a run into their folder is refused "
              "otherwise)\n")
    cfg = parse_cli(ATETrainConfig, [a for a in argv if a != "--fresh"], prog="ate_policy train")
    folders = run(cfg, fresh=fresh)
    summary = json.loads((folders["policy"] / "summary.json").read_text())
    print(f"policy {summary['policy']}{' + ATE (lambda ' + str(summary['lambda']) + ')' if summary['guidance'] else ''}"
          f": {summary['steps']} steps on {summary['processes']} process(es) -> {summary['final_checkpoint']}")
    return 0
