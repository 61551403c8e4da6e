"""Generator ``vae``: class-conditional VAE(s) on MONAI's ``VarAutoEncoder`` (:mod:`pipeline.models.vae`).

``mode: conditional`` trains one VAE fed the class label; ``mode: per_class`` one VAE per class on that class's
images alone (class-specific VAE augmentation). Loss = reconstruction + w(epoch) * KL with the reparameterisation
trick, a linear KL warm-up w(epoch) -> beta and optional free bits. Each network keeps the weights of its epoch
with the best validation loss (reconstruction + beta * KL) and stops early after ``patience`` epochs without
improvement (never during a warm-up). On CUDA the forward pass runs in mixed precision (``amp``); on CPU everything
is float32 and deterministic for a seed.

:class:`VAEGenerator` is also the base of other generators built on the same VAE (``vae_gan``): they add loss
terms and optimisers through :meth:`VAEGenerator._extra_losses` and :meth:`VAEGenerator._after_step`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch.utils.data import DataLoader

from pipeline import distributed
from pipeline.config import VAEConfig
from pipeline.generators.base import one_class
from pipeline.generators.samplers.base import Sampler
from pipeline.generators.samplers.prior import PriorSampler
from pipeline.io.arrays import ImageArray, SplitData
from pipeline.io.loader import image_loader
from pipeline.models.training import Schedule, Step, Trainee, amp_enabled, fit
from pipeline.models.vae import ClassVAEs, ConditionalVAE, kl_divergence, kl_weight, model_args, reconstruction_loss
from pipeline.runtime import seed_everything
from pipeline.workers import restore_state, run_tasks, state_arrays

__all__ = ["VAEGenerator", "vae_network", "evaluate_vae"]

logger = logging.getLogger(__name__)

_BATCH = 256  # images per forward pass outside training (no gradients: bigger batches are cheaper)


def vae_network(shape: tuple[int, ...], num_classes: int, cfg: VAEConfig) -> ConditionalVAE:
    """A VAE of ``cfg``'s architecture for images of ``shape`` (C, X, Y) or (C, X, Y, Z): 2D or 3D like the data."""
    return ConditionalVAE(
        len(shape) - 1,
        shape,
        num_classes,
        cfg.latent_size,
        cfg.channels,
        cfg.strides,
        res_units=cfg.res_units,
        upsample=cfg.upsample,
    )


@torch.no_grad()
def evaluate_vae(model: ConditionalVAE, loader: DataLoader, reconstruction: str, beta: float, device) -> dict:
    """Mean reconstruction loss, KL and their sum reconstruction + beta * KL per image (the negative ELBO
    for beta 1), with the posterior means as codes."""
    model.eval()
    totals, n = {"reconstruction": 0.0, "kl": 0.0}, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        recon, mu, logvar, _ = model(x, y)
        totals["reconstruction"] += reconstruction_loss(recon, x, reconstruction).item() * len(x)
        totals["kl"] += kl_divergence(mu, logvar).item() * len(x)
        n += len(x)
    out = {k: v / n for k, v in totals.items()}
    out["elbo"] = out["reconstruction"] + beta * out["kl"]
    return out


def _fit_class(
    generator: VAEGenerator, task: tuple[int, SplitData, SplitData], device: torch.device
) -> tuple[dict[str, np.ndarray], list[dict]]:
    """One class's network of a ``per_class`` generator, trained on ``task`` = (label, its training images, its
    validation images): its weights (as arrays, to pass between processes) and its history."""
    label, own, val = task
    seed_everything(generator.seed)  # each class's network starts from the same seed, whatever the class order
    model = generator._network(1)
    history = generator.fit_network(model, own, val, device, generator.classes[label])
    return state_arrays(model), history


class _VAETraining(Trainee):
    """One VAE network of a :class:`VAEGenerator` for :func:`pipeline.models.training.fit`: reconstruction +
    w(epoch) * KL plus the generator's extra terms; the kept epoch has the best validation reconstruction + beta * KL.
    """

    monitor = "elbo"

    def __init__(
        self, generator: VAEGenerator, model: ConditionalVAE, train: SplitData, val: SplitData, device, name: str
    ) -> None:
        super().__init__(model, name)
        self.vae, self.generator, self.cfg, self.device = model, generator, generator.cfg, device
        # batches read from disk as the epoch goes (pipeline.io.loader), in the order of a seeded shuffle
        cfg = self.cfg
        self.train_loader = image_loader(train.images, train.labels, cfg.batch_size, device, True, generator.seed)
        self.val_loader = image_loader(val.images, val.labels, max(cfg.batch_size, _BATCH), device)

    def batches(self, epoch: int):
        for x, y in self.train_loader:  # the same global batches on every rank (the loader's seeded order)
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def epoch_fields(self, epoch: int) -> dict[str, float]:
        return {"kl_weight": kl_weight(epoch, self.cfg.beta, self.cfg.kl_warmup_epochs)}

    def loss(self, forward, batch, epoch: int) -> Step:
        x, y = batch
        recon, mu, logvar, _ = forward(x, y)
        # the losses in float32 (binary cross-entropy is not safe in half precision)
        recon, mu, logvar = recon.float(), mu.float(), logvar.float()
        rec = reconstruction_loss(recon, x, self.cfg.reconstruction)
        # (on several processes, free bits > 0 clamp each shard's KL per dimension, not the global batch's)
        weight = kl_weight(epoch, self.cfg.beta, self.cfg.kl_warmup_epochs)
        loss = rec + weight * kl_divergence(mu, logvar, self.cfg.free_bits)
        extra = self.generator._extra_losses(x, y, recon, epoch)
        for term in extra.values():
            loss = loss + term
        kl = kl_divergence(mu.detach(), logvar.detach())  # logged: the true KL, no free bits
        return Step(loss, {"reconstruction": rec, "kl": kl, **extra}, recon.detach())

    def after_update(self, batch, step: Step, epoch: int, scale: float | None) -> dict[str, float]:
        x, y = batch
        return self.generator._after_step(x, y, step.outputs, epoch, scale)

    def validate(self) -> dict[str, float]:
        return evaluate_vae(self.vae, self.val_loader, self.cfg.reconstruction, self.cfg.beta, self.device)

    def summarize(self, means: dict[str, float]) -> dict[str, float]:
        # running means over the epoch, as trained (sampled z)
        return means | {"elbo": means["reconstruction"] + self.cfg.beta * means["kl"]}

    def selectable(self, epoch: int) -> bool:
        return self.generator._selectable(epoch)

    def warmed_up(self, epoch: int) -> bool:
        return self.generator._warmed_up(epoch)


class VAEGenerator:
    """Class-conditional VAE(s) behind the :class:`~pipeline.generators.base.Generator` interface.

    Args:
        image_shape: images' shape, channel first: ``(C, X, Y)`` or ``(C, X, Y, Z)``.
        classes: class names, index = label.
        mode: ``conditional`` (one network fed the label) or ``per_class`` (one network per class).
        cfg: the VAE's settings (section ``vae`` of params.yaml, or a subclass's section).
        seed: initialisation and shuffling seed.

    Example::

        gen = VAEGenerator((1, 64, 64), ("normal", "nodule"), "conditional", cfg, seed=0)
        history = gen.fit(train, val, torch.device("cpu"))
        images = gen.sample(1, 16, np.random.default_rng(0))  # 16 nodule images, (16, 1, 64, 64) in [0, 1]
    """

    kind: ClassVar[str] = "vae"
    config_class: ClassVar[type] = VAEConfig
    # the kind's settings: an instance of config_class (VAEConfig here; a subclass's own, which share the autoencoder
    # training's fields of pipeline.config.TrainingConfig)
    cfg: Any

    def __init__(
        self, image_shape: tuple[int, ...], classes: tuple[str, ...], mode: str, cfg: Any, seed: int = 0
    ) -> None:
        if mode not in ("conditional", "per_class"):
            raise ValueError(f"mode must be conditional or per_class, got {mode!r}")
        if not classes:
            raise ValueError("classes must name at least one class")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.classes = tuple(classes)
        self.mode = mode
        self.cfg = cfg
        self.seed = seed
        self.vaes: ClassVAEs | None = None

    # ---- training ---------------------------------------------------------------------------------------------

    def fit(self, train: SplitData, val: SplitData, device: torch.device, workers: int = 1) -> list[dict]:
        """Train the network(s) of ``mode`` on ``train``, each ending with its best validation epoch's weights;
        return the history (one row per network and epoch; ``model`` names the class, or ``conditional`` for one
        network of several classes). ``workers`` > 1 trains the networks of ``per_class`` in that many processes
        side by side (:func:`pipeline.workers.run_tasks`; each network is seeded alike whoever trains it)."""
        if tuple(train.images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"images of shape {train.images.shape[1:]}, the generator was built for {self.image_shape}"
            )
        seed_everything(self.seed)
        if self.mode == "conditional":
            model = self._network(len(self.classes))
            name = "conditional" if len(self.classes) > 1 else self.classes[0]  # one class: its name
            history = self.fit_network(model, train, val, device, name)
            self.vaes = ClassVAEs("conditional", [model]).eval()
            return history
        tasks, largest = [], max(train.counts().values())
        for label in range(len(self.classes)):
            own = one_class(train, label)
            if self.cfg.balanced_steps and 0 < len(own) < largest:
                # its images repeated (whole copies) to about the largest class's count: as many steps an epoch
                own = own.select(np.tile(np.arange(len(own)), max(1, round(largest / len(own)))))
            tasks.append((label, own, one_class(val, label)))
        # the classes' networks are independent: side by side in `workers` processes (pipeline.workers)
        fitted = run_tasks(
            functools.partial(_fit_class, self, device=device),
            tasks,
            workers,
            desc=f"{self.kind} networks",
            cost=[len(own) for _, own, _ in tasks],
        )
        models, history = [], []
        for state, rows in fitted:
            model = self._network(1)
            restore_state(model, state)
            models.append(model.to(device))
            history += rows
        self.vaes = ClassVAEs("per_class", models).eval()
        return history

    def check_shape(self) -> None:
        """Build one untrained network (milliseconds) and drop it: an image shape or setting the networks cannot
        take raises ValueError now, not after other networks have trained (:mod:`pipeline.planning`)."""
        self._network(1 if self.mode == "per_class" else len(self.classes))

    def _network(self, num_classes: int) -> Any:
        """An untrained network for ``num_classes`` labels (a subclass builds another autoencoder here)."""
        return vae_network(self.image_shape, num_classes, self.cfg)

    @staticmethod
    def _rebuild(entry: dict[str, Any]) -> Any:
        """The untrained network of a checkpoint's ``models`` entry (its weights are loaded after)."""
        return ConditionalVAE(**{"upsample": "transposed", **entry["model_args"]})  # older checkpoints: transposed

    def _selectable(self, epoch: int) -> bool:
        """Whether ``epoch`` may be kept as the best (a subclass excludes its own warm-up)."""
        return True

    def _warmed_up(self, epoch: int) -> bool:
        return epoch + 1 >= self.cfg.kl_warmup_epochs

    def _begin(self, model: ConditionalVAE, device: torch.device, use_amp: bool) -> None:
        """Called before a network's first epoch (a subclass builds its own networks and optimisers here)."""

    def _extra_losses(
        self, x: torch.Tensor, y: torch.Tensor, recon: torch.Tensor, epoch: int
    ) -> dict[str, torch.Tensor]:
        """Weighted loss terms added to the VAE's loss (none for the plain VAE)."""
        return {}

    def _after_step(  # noqa: B027 (a hook: empty on purpose)
        self, x: torch.Tensor, y: torch.Tensor, recon: torch.Tensor, epoch: int, scale: float | None
    ) -> dict[str, float]:
        """Called after each VAE step with the batch's detached reconstructions (a subclass's own updates);
        ``scale``: the factor on this rank's mean losses on several processes (else None)."""
        return {}

    def fit_network(
        self, model: ConditionalVAE, train: SplitData, val: SplitData, device: torch.device, name: str
    ) -> list[dict]:
        """Train one network in place (ending with its best validation epoch's weights); return its history."""
        cfg = self.cfg
        trainee = _VAETraining(self, model.to(device), train, val, device, name)
        self._begin(model, device, amp_enabled(cfg.amp, device))
        distributed.seed_rank(self.seed)  # the reparameterisation noise: each rank draws its own images' noise
        schedule = Schedule(cfg.epochs, cfg.learning_rate, cfg.patience, cfg.amp)
        return fit(trainee, schedule, device, desc=f"{self.kind} {name}").history

    # ---- the trained generator --------------------------------------------------------------------------------

    def _trained(self) -> ClassVAEs:
        if self.vaes is None:
            raise RuntimeError(f"the {self.kind} generator has not been trained (call fit) or loaded")
        return self.vaes

    @property
    def latent_size(self) -> int:
        return self.cfg.latent_size

    def _device(self) -> torch.device:
        return next(self._trained().parameters()).device

    @torch.no_grad()
    def encode(self, images: ImageArray, label: int) -> np.ndarray:
        """Posterior means (float64, ``(n, latent_size)``) of ``images`` of class ``label``."""
        vaes, device = self._trained(), self._device()
        out = [
            vaes.encode(torch.from_numpy(np.ascontiguousarray(images[i : i + _BATCH])).to(device), label)[0]
            .double()
            .cpu()
            for i in range(0, len(images), _BATCH)
        ]
        return torch.cat(out).numpy() if out else np.zeros((0, self.latent_size))

    @torch.no_grad()
    def decode(self, codes: np.ndarray, label: int) -> np.ndarray:
        """Images in [0, 1] (float32, ``(n, *image_shape)``) decoded from latent ``codes`` of class ``label``."""
        vaes, device = self._trained(), self._device()
        if len(codes) == 0:
            return np.zeros((0, *self.image_shape), np.float32)
        parts = [
            vaes.decode(torch.from_numpy(np.asarray(codes[i : i + _BATCH])).float().to(device), label).cpu().numpy()
            for i in range(0, len(codes), _BATCH)
        ]
        return np.concatenate(parts).astype(np.float32)

    def reconstruct(self, images: ImageArray, label: int) -> np.ndarray:
        """Each image decoded from its posterior mean."""
        return self.decode(self.encode(images, label), label)

    def prior(self, label: int, temperature: float = 1.0) -> Sampler:
        """The generator's own distribution of codes, as a latent sampler: N(0, temperature^2 I)."""
        return PriorSampler(temperature).fit(np.zeros((1, self.latent_size)))

    def sample(self, label: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` images of class ``label`` decoded from the prior, z ~ N(0, I) drawn from ``rng``."""
        return self.decode(rng.standard_normal((n, self.latent_size)), label)

    # ---- checkpoint -------------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        vaes = self._trained()
        return {
            "mode": self.mode,
            "classes": list(self.classes),
            "image_shape": list(self.image_shape),
            "config": dataclasses.asdict(self.cfg),
            "seed": self.seed,
            "models": [{"model_args": self._model_args(m), "state_dict": m.state_dict()} for m in vaes.models],
        }

    @staticmethod
    def _model_args(model: Any) -> dict[str, Any]:
        return model_args(model)

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device | str = "cpu") -> Self:
        fields = {f.name: f for f in dataclasses.fields(cls.config_class)}
        config = {k: tuple(v) if isinstance(v, list) else v for k, v in state["config"].items() if k in fields}
        gen = cls(tuple(state["image_shape"]), tuple(state["classes"]), state["mode"], cls.config_class(**config))
        gen.seed = state["seed"]
        models = []
        for entry in state["models"]:
            model = cls._rebuild(entry).to(device)
            model.load_state_dict(entry["state_dict"])
            models.append(model)
        gen.vaes = ClassVAEs(state["mode"], models).eval()
        return gen
