"""Entity types as the LLM reads them: a display name and a one-sentence description per type.

CLLMFS instructions name the type ("Please extract the Person ...") and define it ("the entity of person
refers to ..."). Every type of every registered dataset has a description here; users pass their own
types as ``{"name": "description"}`` mappings or :class:`EntityType` objects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence


@dataclass(frozen=True)
class EntityType:
    """One entity type: the dataset label, the name the prompt uses, and its definition."""

    label: str
    name: str
    description: str

    @classmethod
    def from_label(cls, label: str, description: str | None = None) -> "EntityType":
        name = label.replace("-", " ").replace("_", " ")
        return cls(label, name[:1].upper() + name[1:], description or f"a named entity of type {name}")


_PERSON = "a specific, named person, real or fictional, referred to by name"
_LOCATION = "a named geographical or physical place, such as a country, city, region, landmark or address"
_ORGANIZATION = "a named organization, such as a company, institution, agency, team or political party"

#: (label, display name, description) per registered dataset.
DESCRIPTIONS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "wnut17": (
        ("person", "Person", "the name of a person, including fictional characters and online handles used as names"),
        ("location", "Location", "the name of a place, such as a country, city, building, street or natural landmark"),
        ("group", "Group", "the name of a group of people that is not a company, such as a band, sports team, "
                           "political party or community"),
        ("corporation", "Corporation", "the name of a company, brand-owning business or commercial organization"),
        ("product", "Product", "the name of a product or service, such as a device, app, vehicle, software or food brand"),
        ("creative-work", "Creative Work", "the title of a creative work, such as a song, film, book, TV show, "
                                           "video game or artwork"),
    ),
    "conll2003": (
        ("person", "Person", _PERSON),
        ("location", "Location", "a named place, such as a country, city, region, river or mountain"),
        ("organisation", "Organisation", _ORGANIZATION + ", or a sports club"),
        ("misc", "Miscellaneous", "another named entity that is not a person, location or organisation, such as a "
                                  "nationality, language, event, or the name of a product or work"),
    ),
    "gum": (
        ("abstract", "Abstract", "a mention of an abstract notion, such as an idea, field, quality, policy or "
                                 "named prize, law or work"),
        ("animal", "Animal", "a mention of an animal or animal species"),
        ("event", "Event", "a mention of an event or happening, such as a war, election, meeting, storm or festival"),
        ("object", "Object", "a mention of a concrete, inanimate object or artifact, such as a tool, building part, "
                             "vehicle or document"),
        ("organization", "Organization", "a mention of an organization or institution, such as a company, "
                                         "government, school or team"),
        ("person", "Person", "a mention of a person or group of people, named or not"),
        ("place", "Place", "a mention of a place or location, such as a country, city, building or region"),
        ("plant", "Plant", "a mention of a plant, tree or plant species"),
        ("substance", "Substance", "a mention of a substance or material, such as water, food, chemicals or metals"),
        ("time", "Time", "a mention of a point or period in time, such as a date, year, day, season or duration"),
    ),
    "arman": (
        ("pers", "Person", _PERSON),
        ("org", "Organization", _ORGANIZATION),
        ("loc", "Location", "a named geographical place, such as a country, city, province, river or mountain"),
        ("fac", "Facility", "a named facility or man-made structure, such as a building, airport, bridge, "
                            "stadium or hospital"),
        ("pro", "Product", "a named product, such as a device, vehicle, software, publication or brand"),
        ("event", "Event", "a named event, such as a war, festival, election, conference or sports tournament"),
    ),
    "parstwiner": (
        ("PER", "Person", _PERSON),
        ("LOC", "Location", "a named geographical place or facility, such as a country, city, street or building"),
        ("ORG", "Organization", _ORGANIZATION),
        ("NAT", "Nation", "a nation or nationality, such as Iranian, Afghans or Americans"),
        ("POG", "Political Group", "a named political, religious or ideological group or movement"),
        ("EVE", "Event", "a named event, such as a war, election, holiday, match or festival"),
    ),
    "parsner": (
        ("PERS", "Person", _PERSON),
        ("LOC", "Location", "a named place, such as a country, city, region or landmark"),
        ("ORG", "Organization", _ORGANIZATION),
        ("MISC", "Miscellaneous", "another named entity that is not a person, location or organization, such as an "
                                  "event, product, work, nationality or date"),
    ),
    "uner_en_ewt": (
        ("PER", "Person", _PERSON),
        ("ORG", "Organization", _ORGANIZATION),
        ("LOC", "Location", "a named place, such as a country, city, region, street, building or landmark"),
    ),
    "presidio_synth": (
        ("PERSON", "Person", "the full or partial name of a person"),
        ("STREET_ADDRESS", "Street Address", "a postal street address, with number, street and possibly city and code"),
        ("GPE", "Geopolitical Entity", "a country, state, city or other political region"),
        ("ORGANIZATION", "Organization", "the name of a company, institution or other organization"),
        ("CREDIT_CARD", "Credit Card", "a credit card number"),
        ("DATE_TIME", "Date Time", "a date, time, day, month, year or period"),
        ("TITLE", "Title", "a personal title or honorific, such as Mr., Dr. or Professor"),
        ("PHONE_NUMBER", "Phone Number", "a telephone or fax number"),
        ("AGE", "Age", "the age of a person"),
        ("NRP", "Nationality Religion Politics", "a nationality, religious or political group"),
        ("EMAIL_ADDRESS", "Email Address", "an email address"),
        ("ZIP_CODE", "Zip Code", "a postal or zip code"),
        ("DOMAIN_NAME", "Domain Name", "an internet domain name or website address"),
        ("IBAN_CODE", "IBAN Code", "an international bank account number (IBAN)"),
        ("US_SSN", "Social Security Number", "a US social security number"),
        ("IP_ADDRESS", "IP Address", "an IPv4 or IPv6 network address"),
        ("US_DRIVER_LICENSE", "Driver License", "a US driver's license number"),
    ),
}


def dataset_entity_types(dataset: str, labels: Iterable[str] | None = None) -> list[EntityType]:
    """The described types of a registered dataset (optionally only ``labels``, in that order)."""
    name = dataset.split("/")[0]
    if name not in DESCRIPTIONS:
        raise KeyError(f"no type descriptions for dataset {dataset!r}; pass entity types explicitly")
    known = {label: EntityType(label, display, description) for label, display, description in DESCRIPTIONS[name]}
    if labels is None:
        return list(known.values())
    missing = [label for label in labels if label not in known]
    if missing:
        raise KeyError(f"dataset {dataset!r} has no described types {missing}; known: {list(known)}")
    return [known[label] for label in labels]


def as_entity_types(types: "Sequence[EntityType | str] | Mapping[str, str]") -> list[EntityType]:
    """Normalise user input: EntityType objects, labels, or a ``{label: description}`` mapping."""
    if isinstance(types, Mapping):
        return [EntityType.from_label(label, description) for label, description in types.items()]
    result = []
    for item in types:
        if isinstance(item, EntityType):
            result.append(item)
        elif isinstance(item, str) and item.strip():
            result.append(EntityType.from_label(item.strip()))
        else:
            raise ValueError(f"entity types must be non-empty strings or EntityType objects, got {item!r}")
    labels = [t.label for t in result]
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate entity types in {labels}")
    if not result:
        raise ValueError("at least one entity type is needed")
    return result
