"""Where a published checkpoint lives, how to check it, and the terms it is published under."""

from __future__ import annotations

import re
from dataclasses import dataclass

#: URL scheme of a file shipped inside an installed Python package: package://<package>/<file>
PACKAGE_SCHEME = "package://"

#: SPDX identifiers a weight source may name (https://spdx.org/licenses/); extend as publishers need.
SPDX_LICENSES = frozenset(
    {
        "Apache-2.0",
        "MIT",
        "BSD-2-Clause",
        "BSD-3-Clause",
        "CC0-1.0",
        "CC-BY-4.0",
        "CC-BY-SA-4.0",
        "CC-BY-NC-4.0",
        "CC-BY-NC-SA-4.0",
        "CC-BY-NC-ND-4.0",
    }
)
# Terms without an SPDX identifier: their name, then the publisher's page, e.g. "Some Terms <https://...>".
_NAMED_TERMS = re.compile(r"^(?P<name>[^<>]*\S)\s+<(?P<url>https://[^\s<>]+)>$")
# torchvision gives its weights no licence of their own: "may have their own licenses or terms and conditions
# derived from the dataset used for training" (its README; the code is BSD-3-Clause).
TORCHVISION_TERMS = "torchvision pre-trained model terms <https://github.com/pytorch/vision#pre-trained-model-license>"
_NON_COMMERCIAL = re.compile(r"-NC-|non-?commercial", re.IGNORECASE)


def check_license(text: str, where: str = "weight source") -> str:
    """`text` if it names a licence as a weight source must (an SPDX id, or "name <https://...>"), else ValueError."""
    if not isinstance(text, str) or not (text in SPDX_LICENSES or _NAMED_TERMS.match(text)):
        raise ValueError(
            f"{where}: license {text!r} is neither a known SPDX id ({', '.join(sorted(SPDX_LICENSES))}) "
            'nor terms given as "name <https://publisher.page>"'
        )
    return text


def license_url(text: str) -> str:
    """The page of a licence: SPDX's for an SPDX id, the publisher's for named terms."""
    named = _NAMED_TERMS.match(text)
    return named["url"] if named else f"https://spdx.org/licenses/{text}.html"


def license_name(text: str) -> str:
    """The licence without its URL: the SPDX id, or the name of the terms."""
    named = _NAMED_TERMS.match(text)
    return named["name"] if named else text


def is_non_commercial(text: str) -> bool:
    """True for terms that forbid commercial use (CC-BY-NC-*, or terms named non-commercial)."""
    return bool(_NON_COMMERCIAL.search(text))


@dataclass(frozen=True)
class WeightSource:
    """One checkpoint: downloadable (https://...) or shipped with a package (package://pkg/file)."""

    url: str
    format: str  # "pyth" | "torchvision" | "caffe2" | "pyslowfast" | "safetensors" | "deepspeed" | "transformers"
    #: the terms the publisher gives the file under, from the publisher's own page: an SPDX id
    #: ("Apache-2.0", "CC-BY-NC-4.0"), or where none exists the terms' name and URL ("Name <https://...>")
    license: str
    sha256: str | None = None
    # Some publishers give only a hash prefix (torchvision puts 8 hex digits in the file name).
    sha256_prefix: str | None = None
    size: int | None = None
    num_classes: int = 400
    dataset: str = "kinetics400"
    # The file's name in the cache where the URL's last part is shared by several models
    # (every transformers repository names its weights `model.safetensors`).
    cache_name: str | None = None

    def __post_init__(self) -> None:
        check_license(self.license, self.url)

    @property
    def non_commercial(self) -> bool:
        return is_non_commercial(self.license)

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
