"""Train the classifier and the VAEs on tiny splits, in one process (``python -m tests.distributed_fit OUT``) or under
``python -m torch.distributed.run --nproc_per_node N -m tests.distributed_fit OUT``, and write (rank 0) what
tests/test_distributed.py compares: the weights after the first epoch's steps of networks without batch norm and
sampling noise (where N processes must match one up to float summation order), and the metrics of normal trainings.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import torch

from pipeline import distributed
from pipeline.generators import build_generator
from pipeline.metrics import balanced_accuracy
from pipeline.models import classifier
from pipeline.models.vae import ConditionalVAE
from pipeline.strategies import training_recipe
from tests.conftest import classifier_config, make_split
from tests.generators.test_generators import VAE, VAE_GAN

CPU = torch.device("cpu")
# 13 training images in batches of 8: a global batch of 8 (4 + 4 on two ranks) and an uneven last one of 5 (3 + 2)
FIRST_STEP_TRAIN = make_split(13, 16, seed=0, labels=[0] * 9 + [1] * 4)


def _without_batch_norm(module: torch.nn.Module) -> torch.nn.Module:
    for name, child in module.named_children():
        if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
            setattr(module, name, torch.nn.Identity())
        else:
            _without_batch_norm(child)
    return module


def _flat(module: torch.nn.Module) -> list[float]:
    return torch.cat([p.detach().flatten() for p in module.parameters()]).tolist()


def first_steps() -> dict[str, list[float]]:
    """The weights after one epoch (two steps) of networks whose gradient does not depend on how the batch is split
    (no batch norm, no sampling noise): classifiers with augmentation, Balanced-MixUp and class weights, and the VAE
    and VAE-GAN decoding posterior means."""
    build = classifier.build_classifier
    classifier.build_classifier = lambda *args, **kw: _without_batch_norm(build(*args, **kw))
    out, val = {}, make_split(6, 16, seed=1)
    for strategy in ("classical", "mixup", "class_weight"):
        recipe = training_recipe(strategy, FIRST_STEP_TRAIN, None, 1.0, 0)
        model, _ = classifier.fit_classifier(recipe, val, classifier_config(epochs=1), 0, CPU)
        out[f"classifier {strategy}"] = _flat(model)
    classifier.build_classifier = build
    reparameterize = ConditionalVAE.reparameterize
    ConditionalVAE.reparameterize = lambda self, mu, logvar: mu + 0 * logvar  # no noise: z = mu, logvar still trained
    for kind, cfg in (("vae", VAE), ("vae_gan", dataclasses.replace(VAE_GAN, adversarial_warmup_epochs=0))):
        gen = build_generator(kind, (1, 16, 16), FIRST_STEP_TRAIN.classes, "conditional", cfg, 0)
        network = gen._network
        gen._network = lambda num_classes, network=network: _without_batch_norm(network(num_classes))
        gen.cfg = dataclasses.replace(cfg, epochs=1, kl_warmup_epochs=0)
        gen.fit(FIRST_STEP_TRAIN, val, CPU)
        out[kind] = _flat(gen.vaes)
    ConditionalVAE.reparameterize = reparameterize
    return out


def trainings() -> dict[str, float]:
    """A classifier (batch norm) and a VAE (batch norm, sampling noise) trained as the pipeline trains them."""
    train, val, test = make_split(64, 32, seed=0), make_split(48, 32, seed=1), make_split(48, 32, seed=2)
    cfg = classifier_config(epochs=12, batch_size=16, learning_rate=0.01)
    model, info = classifier.fit_classifier(training_recipe("real_only", train, None, 1.0, 0), val, cfg, 0, CPU)
    scores = {
        split: balanced_accuracy(data.labels, classifier.predict_proba(model, data.images, CPU).argmax(1))
        for split, data in (("val", val), ("test", test))
    }
    gen = build_generator("vae", (1, 32, 32), train.classes, "conditional", dataclasses.replace(VAE, epochs=4), 0)
    history = gen.fit(train, val, CPU)
    best = min(row["val_elbo"] for row in history)
    return {
        "classifier_val_balanced_accuracy": scores["val"],
        "classifier_test_balanced_accuracy": scores["test"],
        "classifier_best_epoch": info.best_epoch,
        "vae_best_val_elbo": best,
        "vae_last_train_elbo": history[-1]["train_elbo"],
    }


def main(out: str) -> None:
    if distributed.launched():
        distributed.join(CPU)
    result = {"world_size": distributed.world_size(), "first_steps": first_steps(), "trainings": trainings()}
    try:
        torch.nn.SyncBatchNorm(4)(torch.rand(2, 4, 3, 3))
        result["sync_batch_norm_on_cpu"] = "works"
    except ValueError as error:  # torch 2.13: "SyncBatchNorm expected input tensor to be on GPU ..."
        result["sync_batch_norm_on_cpu"] = str(error)
    if distributed.is_main():
        with open(out, "w", encoding="utf-8") as fh:
            json.dump(result, fh)
    distributed.finish()


if __name__ == "__main__":
    main(sys.argv[1])
