"""The people and things of a simulated live show: products, hosts, viewers, streams.

The catalogue, the hosts and the viewer population are fixed (each derived from its own constant
seed), so viewer ``V000042`` is the same person in every run and every seed; the simulation seed
only decides who turns up, when, and what they do.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache

#: Devices with their share of viewers and a multiplier on every step of the purchase funnel.
DEVICES: dict[str, tuple[float, float]] = {
    "mobile": (0.55, 1.0),
    "desktop": (0.25, 1.35),
    "tablet": (0.20, 0.65),
}

#: US states with a share of viewers and a multiplier on the purchase funnel.
STATES: dict[str, tuple[float, float]] = {
    "CA": (0.14, 1.15),
    "TX": (0.10, 1.00),
    "FL": (0.08, 0.95),
    "NY": (0.08, 1.20),
    "PA": (0.05, 0.90),
    "IL": (0.05, 1.00),
    "OH": (0.05, 0.85),
    "GA": (0.04, 0.95),
    "NC": (0.04, 1.00),
    "MI": (0.04, 0.85),
    "NJ": (0.04, 1.10),
    "VA": (0.04, 1.05),
    "WA": (0.04, 1.25),
    "AZ": (0.04, 0.90),
    "MA": (0.04, 1.20),
    "CO": (0.03, 1.10),
    "TN": (0.03, 0.85),
    "MN": (0.03, 1.00),
}

HOSTS = (
    "Alice",
    "Bob",
    "Carlos",
    "Diana",
    "Eva",
    "Fay",
    "George",
    "Hana",
    "Ivan",
    "Joy",
    "Kofi",
    "Lena",
)

_FIRST_NAMES = (
    "alex",
    "avery",
    "casey",
    "drew",
    "jamie",
    "jordan",
    "morgan",
    "quinn",
    "riley",
    "sam",
    "taylor",
    "robin",
    "kim",
    "lee",
    "max",
    "noor",
    "priya",
    "sasha",
    "toni",
    "yuki",
)
_LAST_NAMES = (
    "brown",
    "clark",
    "davis",
    "garcia",
    "hall",
    "johnson",
    "lopez",
    "martin",
    "nguyen",
    "patel",
    "smith",
    "young",
    "walker",
    "wright",
    "kim",
    "chen",
    "silva",
    "khan",
    "moore",
    "lee",
)
_ADJECTIVES = ("Classic", "Deluxe", "Eco", "Pro", "Smart", "Mini", "Ultra", "Everyday")
_NOUNS = (
    ("Lipstick", 18),
    ("Earbuds", 79),
    ("Hoodie", 45),
    ("Yoga Mat", 35),
    ("Ring Light", 39),
    ("Face Cream", 29),
    ("Bluetooth Speaker", 59),
    ("Sneakers", 89),
    ("Backpack", 49),
    ("Sunglasses", 25),
    ("Wrist Watch", 129),
    ("Desk Lamp", 34),
    ("Coffee Mug", 14),
    ("Notebook", 9),
    ("Wireless Charger", 27),
    ("Phone Case", 19),
    ("Laptop Stand", 42),
    ("Makeup Kit", 55),
    ("Water Bottle", 22),
    ("Hair Dryer", 69),
    ("Tripod", 31),
    ("Travel Pillow", 24),
    ("Essential Oil", 16),
    ("Keyboard", 74),
    ("Beard Trimmer", 44),
    ("Diffuser", 36),
    ("LED Strip", 21),
    ("Graphic Tee", 24),
    ("Running Shorts", 28),
    ("Fragrance Set", 64),
    ("Monitor Riser", 39),
    ("Blue Light Glasses", 26),
    ("Tote Bag", 32),
    ("Power Bank", 38),
    ("Microphone", 99),
    ("Cap", 17),
    ("Fleece Blanket", 34),
    ("Slippers", 23),
    ("Card Holder", 15),
    ("Tumbler", 19),
)


@dataclass(frozen=True)
class Product:
    product_id: str
    name: str
    price: Decimal
    #: How much more (or less) than average this product converts; about 1.
    appeal: float


@dataclass(frozen=True)
class Viewer:
    viewer_id: str
    email: str
    state: str
    device: str


@dataclass(frozen=True)
class Showcase:
    """One product presented by the host from ``start`` until ``end`` (seconds into the show)."""

    product: Product
    start: float
    end: float


@dataclass(frozen=True)
class Stream:
    stream_id: str
    streamer_name: str
    start: datetime
    end: datetime
    lineup: tuple[Showcase, ...]

    @property
    def duration(self) -> float:
        return (self.end - self.start).total_seconds()

    def showcased_at(self, offset: float) -> Product:
        """The product on show ``offset`` seconds into the stream."""
        for showcase in self.lineup:
            if offset < showcase.end:
                return showcase.product
        return self.lineup[-1].product


@lru_cache(maxsize=1)
def catalog() -> tuple[Product, ...]:
    """The fixed product catalogue: one product per noun, with a varied adjective and price."""
    rng = random.Random("liveshop-catalog")
    products = []
    for number, (noun, base_price) in enumerate(_NOUNS, start=1):
        price = Decimal(round(base_price * rng.uniform(0.8, 1.25))) - Decimal("0.01")
        products.append(
            Product(
                product_id=f"SP{number:03d}",
                name=f"{rng.choice(_ADJECTIVES)} {noun}",
                price=max(price, Decimal("4.99")),
                appeal=rng.lognormvariate(0.0, 0.35),
            )
        )
    return tuple(products)


def _weighted(rng: random.Random, table: dict[str, tuple[float, float]]) -> str:
    names = list(table)
    return rng.choices(names, weights=[table[name][0] for name in names])[0]


@lru_cache(maxsize=65_536)
def viewer(number: int) -> Viewer:
    """Viewer ``number`` of the fixed population (the same person in every run)."""
    rng = random.Random(f"liveshop-viewer-{number}")
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    return Viewer(
        viewer_id=f"V{number:06d}",
        email=f"{first}.{last}{number}@example.com",
        state=_weighted(rng, STATES),
        device=_weighted(rng, DEVICES),
    )


def funnel_multiplier(who: Viewer, product: Product) -> float:
    """How much likelier than average ``who`` is to move one step down the funnel for ``product``."""
    return DEVICES[who.device][1] * STATES[who.state][1] * product.appeal
