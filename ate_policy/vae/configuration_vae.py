"""Configuration of the action InfoVAE and of its two training stages.

Defaults are the authors' (docs/architecture.md (ATE as implemented), paper appendix C/E). YAML recipes live in
``ate_policy/configs/`` and are parsed with draccus, LeRobot's config library: ``--config_path FILE`` plus
dotted overrides such as ``--model.width=64``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class InfoVAEConfig:
    # Padded action dim: pi0 pads every embodiment's actions to 32 (its max_action_dim).
    action_dim: int = 32
    # Model width = latent dim (the paper's latent dimension 512).
    width: int = 512
    n_heads: int = 4
    ffn_dim: int = 1024
    n_layers: int = 9
    dropout: float = 0.1
    # Loss weights: SmoothL1 reconstruction + w_kl * KL + w_mmd * MMD(z, N(0, I)).
    w_kl: float = 7.5e-5
    w_mmd: float = 1.0
    # IMQ kernel constant; None = the authors' 2 * D * 2.
    imq_c: float | None = None
    smooth_l1_beta: float = 1.0

    def __post_init__(self):
        if self.width % self.n_heads:
            raise ValueError(f"model.width ({self.width}) must be divisible by model.n_heads ({self.n_heads})")
        for name in ("action_dim", "width", "n_heads", "ffn_dim", "n_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class DatasetSpec:
    # LeRobot dataset: a hub id ("lerobot/aloha_sim_insertion_human") or any name when `root` is given.
    repo_id: str = ""
    # Local dataset folder; None = the LeRobot cache / hub.
    root: str | None = None
    # Column holding the actions.
    action_key: str = "action"


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 64
    grad_clip_norm: float = 10.0


@dataclass
class WandBConfig:
    enable: bool = False
    project: str = "ate_realman"
    entity: str | None = None


@dataclass
class VAETrainConfig:
    """One InfoVAE stage: ``pretrain`` (Stage 1, KL to N(0, I)) or ``adapt`` (Stage 2, KL to the Stage-1 latents)."""

    stage: str = "pretrain"
    datasets: list[DatasetSpec] = field(default_factory=list)
    output_dir: str = "outputs/vae"
    # Chunk length of this stage (H for pre-training, L = the policy's chunk_size for adaptation).
    chunk_len: int = 50
    # Sliding-window stride over each episode, in frames.
    stride: int = 1
    # Per-dataset action normalisation, as the policy sees its actions: "mean_std" (pi0's default) or "min_max".
    normalization: str = "mean_std"
    # Training length: `epochs` over the windows when set, else `steps`.
    steps: int = 1000
    epochs: int | None = None
    save_every: int = 500
    log_every: int = 20
    seed: int = 1000
    # "auto" = CUDA when available, else CPU.
    device: str = "auto"
    num_workers: int = 0
    # Stage 2 only: folder of the Stage-1 run (holds the latent statistics mu_phi, sigma_phi).
    stage1_dir: str | None = None
    # Stage 2 only: "reverse" = KL(q_psi || N(mu_phi, sigma_phi^2)) as in the paper; "forward" = the authors' code.
    kl_direction: str = "reverse"
    # Latent statistics after Stage 1 use every window (stride 1) unless set.
    stats_stride: int | None = None
    # Share of each dataset's episodes held out (whole episodes) for `ate_policy vae report`.
    val_fraction: float = 0.1
    model: InfoVAEConfig = field(default_factory=InfoVAEConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    wandb: WandBConfig = field(default_factory=WandBConfig)

    def __post_init__(self):
        if self.stage not in ("pretrain", "adapt"):
            raise ValueError(f"stage must be 'pretrain' or 'adapt', got {self.stage!r}")
        if self.normalization not in ("mean_std", "min_max"):
            raise ValueError(f"normalization must be 'mean_std' or 'min_max', got {self.normalization!r}")
        if self.kl_direction not in ("reverse", "forward"):
            raise ValueError(f"kl_direction must be 'reverse' or 'forward', got {self.kl_direction!r}")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")

    @property
    def out(self) -> Path:
        return Path(self.output_dir)
