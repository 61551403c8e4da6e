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
import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline import distributed
from pipeline.config import VAEConfig
from pipeline.generators.base import one_class
from pipeline.generators.samplers.prior import PriorSampler
from pipeline.io.arrays import SplitData
from pipeline.io.loader import image_loader
from pipeline.models.vae import ClassVAEs, ConditionalVAE, kl_divergence, kl_weight, model_args, reconstruction_loss
from pipeline.runtime import adam, seed_everything
from pipeline.workers import restore_state, run_tasks, state_arrays

__all__ = ["VAEGenerator", "vae_network", "evaluate_vae"]

logger = logging.getLogger(__name__)

_BATCH = 256  # images per forward pass outside training (no gradients: bigger batches are cheaper)


def vae_network(shape: tuple[int, ...], num_classes: int, cfg: VAEConfig) -> ConditionalVAE:
    """A VAE of ``cfg``'s architecture for images of ``shape`` (C, X, Y) or (C, X, Y, Z): 2D or 3D like the data."""
    return ConditionalVAE(
        len(shape) - 1, shape, num_classes, cfg.latent_size, cfg.channels, cfg.strides, res_units=cfg.res_units
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

    def __init__(
        self, image_shape: tuple[int, ...], classes: tuple[str, ...], mode: str, cfg: VAEConfig, seed: int = 0
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

    def _network(self, num_classes: int) -> ConditionalVAE:
        """An untrained network for ``num_classes`` labels (a subclass builds another autoencoder here)."""
        return vae_network(self.image_shape, num_classes, self.cfg)

    @staticmethod
    def _rebuild(entry: dict[str, Any]) -> ConditionalVAE:
        """The untrained network of a checkpoint's ``models`` entry (its weights are loaded after)."""
        return ConditionalVAE(**entry["model_args"])

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

    def _after_step(self, x: torch.Tensor, y: torch.Tensor, recon: torch.Tensor, epoch: int) -> dict[str, float]:
        """Called after each VAE step with the batch's detached reconstructions (a subclass's own updates)."""
        return {}

    def fit_network(
        self, model: ConditionalVAE, train: SplitData, val: SplitData, device: torch.device, name: str
    ) -> list[dict]:
        """Train one network in place (ending with its best validation epoch's weights); return its history."""
        cfg = self.cfg
        model.to(device)
        net = distributed.wrap(model)  # DistributedDataParallel on several processes (trains model's weights)
        optimizer = adam(model.parameters(), cfg.learning_rate)
        use_amp = cfg.amp and device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        # batches read from disk as the epoch goes (pipeline.io.loader), in the order of a seeded shuffle
        train_loader = image_loader(train.images, train.labels, cfg.batch_size, device, shuffle=True, seed=self.seed)
        val_loader = image_loader(val.images, val.labels, max(cfg.batch_size, _BATCH), device)
        self._begin(model, device, use_amp)
        distributed.seed_rank(self.seed)  # the reparameterisation noise: each rank draws its own images' noise
        self._shard_scale: float | None = None  # on several processes: the factor on this rank's mean losses
        history, best_state, best_val, best_epoch = [], None, math.inf, -1
        for epoch in (bar := tqdm(range(cfg.epochs), desc=f"{self.kind} {name}", unit="epoch")):
            weight = kl_weight(epoch, cfg.beta, cfg.kl_warmup_epochs)
            model.train()
            sums, n = {"reconstruction": 0.0, "kl": 0.0}, 0
            for x, y in train_loader:  # the same global batches on every rank (the loader's seeded order)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                counted = len(x)
                if distributed.active():  # this rank's shard of the global batch (pipeline.distributed)
                    size, x, y = len(x), distributed.shard(x), distributed.shard(y)
                    self._shard_scale = distributed.loss_scale(size, len(x) / size)
                    counted = distributed.tally(size, len(x))
                with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                    recon, mu, logvar, _ = net(x, y)
                # the losses in float32 (binary cross-entropy is not safe in half precision)
                recon, mu, logvar = recon.float(), mu.float(), logvar.float()
                rec = reconstruction_loss(recon, x, cfg.reconstruction)
                # (on several processes, free bits > 0 clamp each shard's KL per dimension, not the global batch's)
                loss = rec + weight * kl_divergence(mu, logvar, cfg.free_bits)
                extra = self._extra_losses(x, y, recon, epoch)
                for term in extra.values():
                    loss = loss + term
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{self.kind} loss is {loss.item()} at epoch {epoch} ({name}): lower the learning rate "
                        "or check the inputs"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss if self._shard_scale is None else loss * self._shard_scale).backward()
                scaler.step(optimizer)
                scaler.update()
                logged = {k: v.item() for k, v in extra.items()} | self._after_step(x, y, recon.detach(), epoch)
                sums["reconstruction"] += rec.item() * counted
                sums["kl"] += kl_divergence(mu.detach(), logvar.detach()).item() * counted  # the true KL, no free bits
                for key, value in logged.items():
                    sums[key] = sums.get(key, 0.0) + value * counted
                n += counted
            if distributed.active():  # the epoch's totals over every rank's shards
                sums = distributed.sum_over_ranks(sums | {"images": n})
                n = sums.pop("images")
            tr = {k: v / n for k, v in sums.items()}  # running means over the epoch, as trained (sampled z)
            tr["elbo"] = tr["reconstruction"] + cfg.beta * tr["kl"]
            distributed.sync_buffers(model)  # rank 0's batch-norm statistics everywhere: the same validation
            va = distributed.from_main(evaluate_vae(model, val_loader, cfg.reconstruction, cfg.beta, device))
            history.append(
                {
                    "model": name,
                    "epoch": epoch,
                    "kl_weight": weight,
                    **{f"train_{k}": v for k, v in tr.items()},
                    **{f"val_{k}": v for k, v in va.items()},
                }
            )
            bar.set_postfix(train_loss=f"{tr['elbo']:.1f}", val_loss=f"{va['elbo']:.1f}")
            if self._selectable(epoch) and va["elbo"] < best_val:
                best_val, best_epoch = va["elbo"], epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                history[-1]["best"] = True
            if cfg.patience and self._warmed_up(epoch) and best_epoch >= 0 and epoch - best_epoch >= cfg.patience:
                logger.info(
                    "%s: stopped early at epoch %d, no better validation loss since epoch %d", name, epoch, best_epoch
                )
                break
        if best_state is None:
            raise ValueError(f"{self.kind} {name}: no epoch after the warm-up to keep; raise the number of epochs")
        model.load_state_dict(best_state)
        model.eval()
        return history

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
    def encode(self, images: np.ndarray, label: int) -> np.ndarray:
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

    def reconstruct(self, images: np.ndarray, label: int) -> np.ndarray:
        """Each image decoded from its posterior mean."""
        return self.decode(self.encode(images, label), label)

    def prior(self, label: int, temperature: float = 1.0) -> PriorSampler:
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
    def _model_args(model: ConditionalVAE) -> dict[str, Any]:
        return model_args(model)

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device | str = "cpu") -> VAEGenerator:
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
