"""Where a published checkpoint lives and how to check it."""

from __future__ import annotations

from dataclasses import dataclass

#: URL scheme of a file shipped inside an installed Python package: package://<package>/<file>
PACKAGE_SCHEME = "package://"


@dataclass(frozen=True)
class WeightSource:
    """One checkpoint: downloadable (https://...) or shipped with a package (package://pkg/file)."""

    url: str
    format: str  # "pyth" | "torchvision" | "caffe2" | "pyslowfast" | "safetensors" | "deepspeed" | "transformers"
    sha256: str | None = None
    # Some publishers give only a hash prefix (torchvision puts 8 hex digits in the file name).
    sha256_prefix: str | None = None
    size: int | None = None
    num_classes: int = 400
    dataset: str = "kinetics400"
    # The file's name in the cache where the URL's last part is shared by several models
    # (every transformers repository names its weights `model.safetensors`).
    cache_name: str | None = None

    @property
    def filename(self) -> str:
        return self.cache_name or self.url.rsplit("/", 1)[-1]

    @property
    def packaged(self) -> bool:
        return self.url.startswith(PACKAGE_SCHEME)

    def package_location(self) -> tuple[str, str]:
        """(package, file name) of a packaged source, e.g. ("videozoo.weights.embedded", "m.safetensors")."""
        if not self.packaged:
            raise ValueError(f"{self.url}: not a {PACKAGE_SCHEME} URL")
        package, _, name = self.url[len(PACKAGE_SCHEME) :].partition("/")
        if not package or not name or "/" in name:
            raise ValueError(f"{self.url}: expected {PACKAGE_SCHEME}<package>/<file name>")
        return package, name
