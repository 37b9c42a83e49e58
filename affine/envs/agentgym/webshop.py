"""Offline WebShop simulator: a generated catalogue behind the real env's pages, actions and purchase score.

The real WebShop needs a 1M-product database and a Java search index, so RL here runs against this stand-in.  What
must match the real env (so a policy trained here transfers) is kept exact: the page layouts (texts joined by
`` [SEP] ``, 10 results a page, 50 at most, ``Next >``/``< Prev``/``Back to Search``, item tabs), the two actions with
lower-cased arguments, "an unavailable action is a no-op that shows the same page", "only ``click[buy now]`` ends the
episode", and the score formula::

    (matched goal attributes + matched goal options + [price <= bound]) / (#attributes + #options + 1) * type factor

Simplifications (documented because they change scores at the margin):

* fuzzy matching: the real env accepts ``fuzz.token_set_ratio > 85``; we accept when one normalised token set contains
  the other (``token_set_ratio`` is 100 exactly then), and an attribute also matches when it appears in the title.
* type factor: 1 same product type, 0.5 a type sharing a word (``table lamp`` vs ``floor lamp``), 0.1 same category,
  else 0 — the real env derives the same four levels from query/category/title overlap.
* search ranks by idf-weighted query-token overlap instead of BM25.

Train and eval goals target disjoint products (every 5th catalogue product is reserved for eval), and their price
bounds differ in parity (train: even multiples of $10, eval: odd), so the two splits share neither a target nor an
instruction text, by construction.

Shaping (recipe: +0.1 search, +0.3 click, +1.0 purchase) is paid per *milestone*, once each, so it cannot be farmed by
repeating searches or browsing: a search whose results hold a product of the goal's type (+0.1), opening such a
product (+0.3), selecting each goal option on one (+0.3 each), and the purchase, paid ``completion * score`` so a bad
purchase earns little.
"""

from __future__ import annotations

import re
from typing import Any

from affine.envs.agentgym.react import parse_last, react
from affine.envs.agentgym.webshop_catalogue import Goal, Product, catalogue, make_goal, purchase_score, search
from affine.envs.agentgym.webshop_catalogue import fuzzy_match as fuzzy_match  # re-exported for callers of this module
from affine.envs.base import Shaping, Step, check_split

SEP = " [SEP] "
_ACTION = re.compile(r"(.+)\[(.+)\]")
PAGE_SIZE = 10
SEARCH_BONUS = 0.1
CLICK_BONUS = 0.3
TABS = ("description", "features", "reviews", "attributes")


class WebShop:
    """AgentGym WebShop behind the ``MultiTurnEnv`` interface (see module docstring for what is simulated how)."""

    name = "agentgym:webshop"
    success_score = 1.0
    instructions = (
        "You are shopping in an online store. Each turn you see the current web page as its visible texts separated "
        "by [SEP], and you reply with one action that brings you closer to buying the product the instruction "
        "describes.\nActions (lower-case, nothing between the word and '['):\n"
        "- search[keywords]: only when the page has a search bar (the page ending in 'Search').\n"
        "- click[value]: value must be a clickable text of the page: a product id, an option value, 'Buy Now', "
        "'Next >', '< Prev', 'Back to Search', 'Description', 'Features', 'Reviews' or 'Attributes'.\n"
        "An action that is not available on the page does nothing. Clicking 'Buy Now' ends the episode; you are "
        "scored on how well the product, the options you selected and its price match the instruction.\n"
        "Reply in this format:\nThought:\n<your reasoning>\n\nAction:\n<one action>"
    )

    def __init__(
        self,
        split: str = "train",
        max_turns: int = 10,
        difficulty: int = 1,
        shaping: Shaping | None = None,
        seed: int = 0,
    ) -> None:
        check_split(split)
        self.split, self.max_turns, self.difficulty, self.seed = split, max_turns, max(1, difficulty), seed
        self.shaping = shaping or Shaping()
        self.products = {p.asin: p for p in catalogue(seed)}
        self.goal: Goal | None = None
        self._done, self.turn, self.score = True, 0, 0.0

    # -- episode --------------------------------------------------------------------------------------------------
    def reset(self, task_id: int) -> str:
        self.goal = make_goal(self.seed, self.split, task_id, self.difficulty)
        self.task_id, self.turn, self.score = task_id, 0, 0.0
        self._done, self._milestones = False, set()
        self.page: tuple[Any, ...] = ("search",)
        self._results: list[Product] = []
        self._last_results: tuple[str, int] = ("results", 1)
        self.selected: dict[str, str] = {}
        self._expert_refine = False
        return self.render()

    def step(self, reply: str) -> Step:
        if self._done or self.goal is None:
            info = {"action": None, "valid": False, "success": self.score >= 1.0, "truncated": False, "progress": False}
            return Step("The episode is over; call reset().", 0.0, True, self.score, info)
        self.turn += 1
        parsed = parse_last(reply, webshop=True)
        bonus, valid, action = 0.0, False, parsed.action
        if action is None:
            obs = parsed.error or "Invalid Action."
        else:
            # WebShop's own parse: ``name[arg]`` on one line, the name exactly ``search`` or ``click`` (case matters,
            # no space before ``[``), the argument lower-cased; anything else is a no-op.
            m = _ACTION.match(action)
            if m and m.group(1) in ("search", "click") and m.group(2).strip():
                valid, bonus = self._apply(m.group(1), m.group(2).strip().lower())
            obs = self.render()  # an unavailable action leaves the page as it was, like the real env
        reward = bonus + (0.0 if valid else self.shaping.invalid_penalty)
        truncated = not self._done and self.turn >= self.max_turns
        reward += self.shaping.timeout_penalty if truncated else 0.0
        self._done = self._done or truncated
        info = {"action": action, "valid": valid, "success": self.score >= 1.0, "truncated": truncated}
        info.update(progress=bonus > 0 and self.page[0] != "done", turn=self.turn)
        return Step(obs, reward, self._done, self.score, info)

    def _apply(self, verb: str, arg: str) -> tuple[bool, float]:
        """Apply a well-formed action; returns (valid, shaped reward).  Unavailable actions change nothing."""
        goal, kind, bonus = self.goal, self.page[0], 0.0
        assert goal is not None
        if verb == "search":
            if kind != "search":
                return False, 0.0
            self._results = search(self.seed, arg)
            self.page = self._last_results = ("results", 1)
            if any(p.ptype == goal.ptype for p in self._results):
                bonus += self._milestone("search", SEARCH_BONUS)
            return True, bonus
        if arg not in self.clickables():
            return False, 0.0
        if arg == "back to search":
            self.page, self.selected = ("search",), {}
        elif arg == "next >":
            self.page = self._last_results = ("results", self.page[1] + 1)
        elif arg == "< prev":
            if kind == "results":
                self.page = self._last_results = ("results", self.page[1] - 1)
            else:
                self.page = self._last_results if kind == "item" else ("item", self.page[1])
        elif kind == "results":
            product = self.products[arg.upper()]
            self.page, self.selected = ("item", product.asin), {}
            if product.ptype == goal.ptype:
                bonus += self._milestone("open", CLICK_BONUS)
        elif arg in TABS:
            self.page = ("tab", self.page[1], arg)
        elif arg == "buy now":
            product = self.products[self.page[1]]
            self.score = purchase_score(goal, product, self.selected)
            self._done, self.page = True, ("done", product.asin)
            bonus += self.shaping.completion * self.score
        else:
            product = self.products[self.page[1]]
            name = next(n for n, vs in product.options if arg in vs)
            self.selected[name] = arg
            if product.ptype == goal.ptype and arg in (v for _, v in goal.options):
                bonus += self._milestone(f"option:{arg}", CLICK_BONUS)
        return True, bonus

    def _milestone(self, key: str, value: float) -> float:
        if key in self._milestones:
            return 0.0
        self._milestones.add(key)
        return value

    # -- pages ----------------------------------------------------------------------------------------------------
    def _page_results(self) -> list[Product]:
        n = self.page[1]
        return self._results[(n - 1) * PAGE_SIZE : n * PAGE_SIZE]

    def clickables(self) -> list[str]:
        """Lower-cased clickable texts of the current page (what ``click[...]`` accepts)."""
        kind = self.page[0]
        if kind == "results":
            more = self.page[1] * PAGE_SIZE < len(self._results)
            return (
                ["back to search"]
                + (["< prev"] if self.page[1] > 1 else [])
                + (["next >"] if more else [])
                + [p.asin.lower() for p in self._page_results()]
            )
        if kind == "item":
            values = [v for _, vs in self.products[self.page[1]].options for v in vs]
            return ["back to search", "< prev", *values, *TABS, "buy now"]
        if kind == "tab":
            return ["back to search", "< prev"]
        return []

    def render(self) -> str:
        """The page's visible texts joined by `` [SEP] ``, in the real env's order."""
        assert self.goal is not None
        head, kind = ["Instruction:", self.goal.instruction], self.page[0]
        if kind == "search":
            return SEP.join(["WebShop", *head, "Search"])
        if kind == "results":
            n = self.page[1]
            parts = [*head, "Back to Search", f"Page {n} (Total results: {len(self._results)})"]
            parts += (["< Prev"] if n > 1 else []) + (["Next >"] if n * PAGE_SIZE < len(self._results) else [])
            for p in self._page_results():
                parts += [p.asin, p.title, f"${p.price:.2f}"]
            return SEP.join(parts)
        product = self.products[self.page[1]]
        if kind == "item":
            parts = [*head, "Back to Search", "< Prev"]
            for name, values in product.options:
                parts += [name, *values]
            parts += [product.title, f"Price: ${product.price:.2f}", "Rating: N.A.", *(t.title() for t in TABS)]
            return SEP.join([*parts, "Buy Now"])
        if kind == "tab":
            tab = self.page[2]
            attrs = ", ".join(product.attributes)
            text = {
                "description": f"This {product.ptype} is {attrs}. {product.title}.",
                "features": SEP.join(a.capitalize() for a in product.attributes),
                "reviews": f"Great {product.ptype}, exactly as described. 5 out of 5 stars.",
                "attributes": SEP.join(product.attributes),
            }[tab]
            return SEP.join([*head, "Back to Search", "< Prev", text])
        return SEP.join(
            [
                "Thank you for shopping with us!",
                "Purchased",
                product.asin,
                "Your score (min 0.0, max 1.0)",
                f"{self.score}",
            ]
        )

    # -- expert ---------------------------------------------------------------------------------------------------
    def satisfies(self, product: Product) -> bool:
        """Whether buying ``product`` with the goal's options would score 1 (the expert's test)."""
        assert self.goal is not None
        offered = {v for _, vs in product.options for v in vs}
        return purchase_score(self.goal, product, {n: v for n, v in self.goal.options if v in offered}) >= 1.0 and all(
            v in offered for _, v in self.goal.options
        )

    def expert_reply(self) -> str:
        """A scripted shopper with access to the goal: search, page until a product that scores 1, set its options,
        buy.  It reads only what a page shows plus the goal, so its replies are valid demonstrations."""
        if self.goal is None:
            raise RuntimeError("call reset() before expert_reply()")
        goal, kind = self.goal, self.page[0]
        if kind == "search":
            target = self.products[goal.asin]
            query = target.title.lower() if self._expert_refine else f"{goal.ptype} {' '.join(goal.attributes)}"
            return react(
                f"I need {goal.ptype} that is {', '.join(goal.attributes)}. I will search for it.", f"search[{query}]"
            )
        if kind == "results":
            for p in self._page_results():
                if self.satisfies(p):
                    return react(
                        f"{p.asin} is {p.ptype} with the attributes I need and costs ${p.price:.2f}, under "
                        f"${goal.price_upper:.2f}. I will open it.",
                        f"click[{p.asin.lower()}]",
                    )
            if "next >" in self.clickables():
                return react(
                    "No product on this page fits the instruction. I will check the next page.", "click[next >]"
                )
            self._expert_refine = True
            return react("None of the results fit. I will go back and search more precisely.", "click[back to search]")
        product = self.products[self.page[1]]
        if kind == "item" and self.satisfies(product):
            for name, value in goal.options:
                if self.selected.get(name) != value:
                    return react(f"The instruction asks for {name}: {value}, so I will select it.", f"click[{value}]")
            return react(
                "This product matches the instruction and every option is set. I will buy it.", "click[buy now]"
            )
        return react("This page does not help me; I will go back.", "click[< prev]")
