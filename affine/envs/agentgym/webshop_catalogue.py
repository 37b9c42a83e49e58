"""WebShop's shop side: the generated catalogue, goals, search and the purchase-score rules.

Split from ``webshop.py`` so the data and the scoring a policy is judged by live apart from the page/action layer: they
are usable (and testable) without an env, and each module keeps one job.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

MAX_RESULTS = 50
PER_TYPE = 16
EVAL_EVERY = 5

_CATEGORIES: dict[str, dict[str, Any]] = {
    "fashion": {
        "types": ["running shoes", "walking shoes", "hoodie", "cargo pants", "rain jacket"],
        "attrs": [
            "machine washable",
            "non slip",
            "breathable",
            "lightweight",
            "quick drying",
            "slim fit",
            "moisture wicking",
            "long sleeve",
        ],
        "options": {
            "color": ["black", "white", "navy", "grey", "red", "beige", "olive", "pink"],
            "size": ["small", "medium", "large", "xl", "xxl"],
        },
        "price": (15, 90),
    },
    "beauty": {
        "types": ["shampoo", "hair conditioner", "face moisturizer", "body lotion", "lip balm"],
        "attrs": [
            "paraben free",
            "cruelty free",
            "long lasting",
            "natural ingredients",
            "sulfate free",
            "travel size",
            "fragrance free",
            "dermatologist tested",
        ],
        "options": {
            "scent": ["lavender", "vanilla", "unscented", "citrus", "rose", "coconut"],
            "size": ["2 fl oz", "8 fl oz", "16 fl oz", "32 fl oz"],
        },
        "price": (5, 45),
    },
    "grocery": {
        "types": ["green tea", "herbal tea", "protein bar", "coffee beans", "trail mix"],
        "attrs": [
            "gluten free",
            "sugar free",
            "non gmo",
            "low carb",
            "keto friendly",
            "high protein",
            "usda organic",
            "kosher certified",
        ],
        "options": {
            "flavor": ["original", "chocolate", "honey", "mint", "lemon", "cinnamon"],
            "size": ["pack of 6", "pack of 12", "pack of 24"],
        },
        "price": (4, 40),
    },
    "electronics": {
        "types": ["bluetooth headphones", "wireless earbuds", "usb cable", "phone case", "power bank"],
        "attrs": [
            "fast charging",
            "noise cancelling",
            "water resistant",
            "long battery life",
            "high definition",
            "easy to install",
            "shockproof",
            "hands free",
        ],
        "options": {
            "color": ["black", "white", "blue", "silver", "gold", "purple"],
            "style": ["standard", "pro", "mini", "max"],
        },
        "price": (10, 150),
    },
    "home": {
        "types": ["office chair", "table lamp", "floor lamp", "throw pillow", "bed sheets"],
        "attrs": [
            "easy to clean",
            "easy to assemble",
            "space saving",
            "mid century",
            "solid wood",
            "height adjustable",
            "dimmable",
            "living room",
        ],
        "options": {
            "color": ["black", "white", "walnut", "grey", "green", "cream"],
            "size": ["twin", "queen", "king", "standard"],
        },
        "price": (12, 200),
    },
}
_BRANDS = ["Acme", "Nordlys", "Veloce", "Kirra", "Maple & Co", "Zentro", "Oakhaven", "Lumio", "Brisa", "Tundra"]
_OPENERS = ["i am looking for", "i need", "i want to buy", "find me", "i'm looking for"]


@dataclass(frozen=True)
class Product:
    asin: str
    category: str
    ptype: str
    title: str
    price: float
    attributes: tuple[str, ...]
    options: tuple[tuple[str, tuple[str, ...]], ...]
    split: str


@dataclass(frozen=True)
class Goal:
    asin: str
    category: str
    ptype: str
    attributes: tuple[str, ...]
    options: tuple[tuple[str, str], ...]
    price_upper: float
    instruction: str


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def fuzzy_match(a: str, b: str) -> bool:
    """Stand-in for ``token_set_ratio > 85``: one normalised token set contains the other."""
    ta, tb = _tokens(a), _tokens(b)
    return bool(ta and tb) and (ta <= tb or tb <= ta)


def type_factor(goal: Goal, product: Product) -> float:
    if product.ptype == goal.ptype:
        return 1.0
    if set(product.ptype.split()) & set(goal.ptype.split()):
        return 0.5
    return 0.1 if product.category == goal.category else 0.0


def purchase_score(goal: Goal, product: Product, selected: Mapping[str, str]) -> float:
    """The real WebShop reward for buying ``product`` with ``selected`` options (see module docstring)."""
    title = " ".join(sorted(_tokens(product.title)))
    attrs = sum(
        any(fuzzy_match(a, pa) for pa in product.attributes) or " ".join(sorted(_tokens(a))) in title
        for a in goal.attributes
    )
    opts = sum(any(fuzzy_match(v, sv) for sv in selected.values()) for _, v in goal.options)
    price = 1.0 if product.price <= goal.price_upper else 0.0
    raw = (attrs + opts + price) / (len(goal.attributes) + len(goal.options) + 1)
    return round(raw * type_factor(goal, product), 4)


@lru_cache(maxsize=8)
def catalogue(seed: int = 0) -> tuple[Product, ...]:
    """The shop's products: fixed per ``seed`` and shared by both splits (search sees everything, like the real DB)."""
    rng = random.Random(f"webshop-catalogue:{seed}")
    products: list[Product] = []
    seen: set[str] = set()
    for category, spec in _CATEGORIES.items():
        for ptype in spec["types"]:
            for _ in range(PER_TYPE):
                asin = "B0" + "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(8))
                if asin in seen:
                    continue
                seen.add(asin)
                attrs = tuple(rng.sample(spec["attrs"], 3))
                names = rng.sample(sorted(spec["options"]), rng.randint(1, 2))
                picks = [set(rng.sample(spec["options"][n], min(3, rng.randint(2, 4)))) for n in names]
                options = tuple(
                    (n, tuple(v for v in spec["options"][n] if v in pick)) for n, pick in zip(names, picks, strict=True)
                )
                price = math.floor(rng.uniform(*spec["price"])) + 0.99
                title = f"{rng.choice(_BRANDS)} {ptype.title()} - {attrs[0].title()}, {attrs[1].title()}"
                split = "eval" if len(products) % EVAL_EVERY == 0 else "train"
                products.append(Product(asin, category, ptype, title, price, attrs, options, split))
    return tuple(products)


@lru_cache(maxsize=8)
def _index(seed: int) -> tuple[list[set[str]], dict[str, float]]:
    docs = [_tokens(f"{p.title} {p.ptype} {p.category} {' '.join(p.attributes)}") for p in catalogue(seed)]
    df: dict[str, int] = {}
    for doc in docs:
        for t in doc:
            df[t] = df.get(t, 0) + 1
    return docs, {t: math.log(1 + len(docs) / n) for t, n in df.items()}


def search(seed: int, query: str) -> list[Product]:
    """Top-50 products by idf-weighted overlap with the query tokens (ties broken by id, so deterministic)."""
    docs, idf = _index(seed)
    q = _tokens(query)
    scored = [
        (sum(idf[t] for t in q & doc), p.asin, p) for doc, p in zip(docs, catalogue(seed), strict=True) if q & doc
    ]
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [p for _, _, p in scored[:MAX_RESULTS]]


def make_goal(seed: int, split: str, task_id: int, difficulty: int = 1) -> Goal:
    """Deterministic in (seed, split, task_id); the target is a product of ``split`` so splits never share one."""
    rng = random.Random(f"webshop-goal:{seed}:{split}:{task_id}:{difficulty}")
    pool = [p for p in catalogue(seed) if p.split == split]
    target = pool[rng.randrange(len(pool))]
    attrs = tuple(rng.sample(target.attributes, min(3, rng.randint(1, 1 + difficulty))))
    n_opts = rng.randint(0, min(len(target.options), difficulty))
    options = tuple((n, rng.choice(vs)) for n, vs in rng.sample(target.options, n_opts))
    tens = math.ceil(target.price * rng.uniform(1.1, 1.6) / 10)
    bound = float(10 * (tens + (tens % 2 != (split == "eval"))))  # even tens for train, odd for eval
    article = "an" if target.ptype[0] in "aeiou" else "a"
    text = f"{rng.choice(_OPENERS)} {article} {target.ptype} that is {' and '.join(attrs)}"
    if options:
        text += ", with " + ", and ".join(f"{n}: {v}" for n, v in options)
    text += f", and price lower than {bound:.2f} dollars"
    return Goal(target.asin, target.category, target.ptype, attrs, options, bound, text)
