"""ALFWorld's task catalogue: room layouts, task types and their (task, room, object, goal) combinations per split.

Split from ``alfworld.py`` so what can be asked (and which split owns it) is defined in one place, apart from the
simulator that plays it; the generator and the expert both read these tables.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

TASK_TYPES = (
    "pick_and_place",
    "pick_two_obj_and_place",
    "pick_clean_then_place",
    "pick_heat_then_place",
    "pick_cool_then_place",
    "look_at_obj_in_light",
)
# room -> (receptacles "type[*]:lo-hi", * = openable; objects "type=likely,receptacle,types", best first)
_ROOM_SPECS = {
    "kitchen": (
        "cabinet*:2-6 drawer*:1-3 countertop:1-3 fridge*:1 microwave*:1 sinkbasin:1 stoveburner:2-4 coffeemachine:1 "
        "toaster:1 diningtable:1 garbagecan:1 shelf:0-2",
        "apple=countertop,diningtable,fridge bread=countertop,diningtable egg=fridge,countertop "
        "potato=fridge,countertop,diningtable tomato=countertop,diningtable,fridge "
        "lettuce=fridge,countertop,diningtable mug=countertop,coffeemachine,shelf,cabinet "
        "cup=countertop,diningtable,cabinet plate=countertop,diningtable,cabinet bowl=countertop,shelf,cabinet "
        "pan=stoveburner,countertop,cabinet pot=stoveburner,countertop,cabinet "
        "knife=countertop,diningtable,drawer fork=countertop,drawer spoon=countertop,diningtable,drawer "
        "spatula=countertop,drawer saltshaker=countertop,shelf,cabinet winebottle=countertop,diningtable,fridge",
    ),
    "livingroom": (
        "sofa:1 armchair:1 coffeetable:1 sidetable:1-2 tvstand:1 shelf:1-4 drawer*:1-3 cabinet*:1-3 dresser:1 "
        "garbagecan:1",
        "remotecontrol=sofa,coffeetable,tvstand,armchair keychain=coffeetable,sidetable,dresser,drawer "
        "creditcard=coffeetable,sidetable,drawer newspaper=sofa,coffeetable,armchair pillow=sofa,armchair "
        "statue=shelf,coffeetable,sidetable vase=shelf,sidetable box=coffeetable,shelf,dresser laptop=sofa,coffeetable "
        "watch=sidetable,dresser,drawer",
    ),
    "bedroom": (
        "bed:1 desk:1-2 sidetable:1-2 dresser:1 drawer*:2-6 shelf:1-4 garbagecan:1 laundryhamper:1 safe*:1",
        "book=bed,desk,shelf,sidetable cellphone=bed,desk,sidetable,drawer alarmclock=desk,sidetable,dresser "
        "cd=desk,shelf,drawer pen=desk,sidetable,drawer pencil=desk,sidetable,drawer keychain=dresser,sidetable,drawer "
        "creditcard=desk,dresser,drawer pillow=bed laptop=bed,desk mug=desk,shelf,sidetable "
        "cloth=dresser,laundryhamper,drawer",
    ),
    "bathroom": (
        "toilet:1 sinkbasin:1-2 bathtubbasin:1 countertop:1 cabinet*:1-4 drawer*:1-3 towelholder:1 handtowelholder:1 "
        "toiletpaperhanger:1 garbagecan:1 shelf:0-2",
        "soapbar=sinkbasin,countertop,bathtubbasin,toilet soapbottle=countertop,toilet,shelf,cabinet "
        "toiletpaper=toiletpaperhanger,toilet,countertop,cabinet spraybottle=toilet,countertop,cabinet "
        "candle=countertop,toilet,shelf cloth=countertop,bathtubbasin,cabinet towel=towelholder "
        "handtowel=handtowelholder dishsponge=countertop,sinkbasin,cabinet tissuebox=toilet,countertop,shelf",
    ),
}
ROOMS: dict[str, tuple[str, dict[str, list[str]]]] = {
    room: (recs, {o: likely.split(",") for o, likely in (pair.split("=") for pair in objs.split())})
    for room, (recs, objs) in _ROOM_SPECS.items()
}
_GOAL_TYPES = set(
    "countertop diningtable cabinet drawer fridge microwave shelf garbagecan sinkbasin sofa armchair coffeetable "
    "sidetable tvstand dresser bed desk safe toilet bathtubbasin".split()
)
# task type -> (verb, appliance, state flag); then the object types each such task can ask for
CHANGE = {
    "pick_clean_then_place": ("clean", "sinkbasin", "clean"),
    "pick_heat_then_place": ("heat", "microwave", "hot"),
    "pick_cool_then_place": ("cool", "fridge", "cool"),
}
BY_VERB = {verb: (appliance, flag) for verb, appliance, flag in CHANGE.values()}
_CHANGEABLE = {
    "pick_clean_then_place": "apple potato tomato lettuce mug cup plate bowl pan pot knife fork spoon spatula soapbar "
    "cloth dishsponge".split(),
    "pick_heat_then_place": "apple bread egg potato tomato mug cup plate".split(),
    "pick_cool_then_place": "apple bread egg potato tomato lettuce mug cup plate pan pot winebottle".split(),
}
LAMP, LAMP_PLACES, LAMP_ROOMS = "desklamp", ("desk", "sidetable", "dresser"), {"livingroom", "bedroom"}
TEXTS = {
    "pick_and_place": ("put a {o} in {r}.", "put some {o} on {r}."),
    "pick_two_obj_and_place": ("put two {o} in {r}.", "find two {o} and put them in {r}."),
    "pick_clean_then_place": ("put a clean {o} in {r}.", "clean some {o} and put it in {r}."),
    "pick_heat_then_place": ("put a hot {o} in {r}.", "heat some {o} and put it in {r}."),
    "pick_cool_then_place": ("put a cool {o} in {r}.", "cool some {o} and put it in {r}."),
    "look_at_obj_in_light": ("look at {o} under the desklamp.", "examine the {o} with the desklamp."),
}


def _split_of(combo: tuple[str, str, str, str]) -> str:
    return "eval" if zlib.crc32("|".join(combo).encode()) % 5 == 0 else "train"


@lru_cache(maxsize=1)
def combos() -> dict[str, dict[str, list[tuple[str, str, str, str]]]]:
    """split -> task type -> valid (task type, room, object type, goal receptacle type) combinations."""
    out: dict[str, dict[str, list]] = {s: {t: [] for t in TASK_TYPES} for s in ("train", "eval")}
    for room, (spec, objects) in ROOMS.items():
        rtypes = {part.split(":")[0].rstrip("*") for part in spec.split()}
        for kind in TASK_TYPES:
            appliance = CHANGE[kind][1] if kind in CHANGE else None
            if (appliance and appliance not in rtypes) or (kind.startswith("look") and room not in LAMP_ROOMS):
                continue
            for obj in objects:
                if kind in _CHANGEABLE and obj not in _CHANGEABLE[kind]:
                    continue
                goals = [None] if kind.startswith("look") else sorted((_GOAL_TYPES & rtypes) - {appliance})
                for goal in goals:
                    combo = (kind, room, obj, goal or LAMP)
                    out[_split_of(combo)][kind].append(combo)
    return out


@dataclass(frozen=True)
class Task:
    kind: str
    room: str
    obj: str  # target object type
    goal: str  # goal receptacle type ("desklamp" for look_at_obj_in_light)
    text: str

    @property
    def combo(self) -> tuple[str, str, str, str]:
        return (self.kind, self.room, self.obj, self.goal)
