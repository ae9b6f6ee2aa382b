"""The known content the search contract tests search: 1,000 entities made by a formula,
a few of them written to be found by keywords or by meaning, and a small labelled set
for the relevance check (queries -> the ids a person judged relevant)."""

from __future__ import annotations

from typing import Any

GENRES = ["fantasy", "history", "science", "poetry", "travel", "cooking", "mystery"]
AUTHORS = [
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Ken",
    "Dennis", "Margaret", "Frances", "John", "Tony", "Zoé",
]  # fmt: skip
SHELVES = ["north", "south", "east", "west", "attic", "cellar", "annex", "lobby", "hall"]

#: Texts that replace the formula's: keyword targets and one topic each for meaning.
SPECIAL_TEXT = {
    7: "Quantum entanglement explained for gardeners",
    123: "quantum quantum",
    456: (
        "A long catalogue entry that mentions entanglement once among many other ordinary"
        " words about shelves, archives, boxes, copies, labels and visitors"
    ),
    50: "A recipe for baking sourdough bread with a crispy crust",
    150: "How to repair a flat bicycle tire on the road",
    250: "The migration of humpback whales across the Pacific ocean",
    350: "Tips for training a puppy to sit and stay",
    550: "Investing in index funds for retirement savings",
    650: "Symptoms and treatment of the common cold and flu",
    750: "Learning chess openings: a guide for beginners",
    850: "Planting tomatoes and peppers in a vegetable garden",
}

CORPUS_SIZE = 1000


def entity_id(i: int) -> str:
    return f"e{i:04d}"


def entity_type(i: int) -> str:
    return "book" if i % 10 < 7 else "note"


def entity_data(i: int) -> dict[str, Any]:
    data: dict[str, Any] = {
        "genre": GENRES[i % 7],
        "author": {"name": AUTHORS[i % 13], "born": 1900 + i % 97},
        "price": round(i * 0.37, 2),
        "in_print": i % 2 == 0,
    }
    # Stars: a number 1..5, absent on every 50th, a string on every 100th after 1.
    if i % 100 == 1:
        data["stars"] = "5"
    elif i % 50 != 0:
        data["stars"] = i % 5 + 1
    if i in SPECIAL_TEXT:
        data["text"] = SPECIAL_TEXT[i]
    else:
        volume = "volume " * (1 + i % 4) if i % 3 == 0 else ""
        data["text"] = f"catalogue entry {i} {volume}shelf {SHELVES[i % 9]}"
    return data


def corpus() -> list[tuple[str, str, dict[str, Any]]]:
    return [(entity_type(i), entity_id(i), entity_data(i)) for i in range(CORPUS_SIZE)]


# -- the labelled set (relevance) -----------------------------------------------------------

#: id -> text. Three documents per topic, written in different words.
LABELLED_DOCS = {
    "bread1": "Knead the dough, let it rise overnight, then bake the loaf in a hot oven",
    "bread2": "My sourdough starter needs feeding with flour and water every day",
    "bread3": "Baguettes and rye loaves from the corner bakery",
    "bike1": "Patching an inner tube after a puncture on a long ride",
    "bike2": "Adjusting the derailleur so the chain shifts cleanly between gears",
    "bike3": "Cycling commute: helmet, lights and a good lock",
    "whale1": "Orcas and dolphins hunt together near the coast",
    "whale2": "Blue whales are the largest animals that ever lived in the sea",
    "whale3": "Marine biologists tag sea turtles to follow their journeys",
    "dog1": "House-training a new puppy takes patience and treats",
    "dog2": "Walking the dog twice a day keeps it calm and healthy",
    "dog3": "Which dog breeds are good with small children",
    "money1": "Putting part of every paycheck into a pension plan",
    "money2": "Stocks, bonds and diversification for long-term investors",
    "money3": "Paying off a credit card before the interest grows",
    "sick1": "Drink fluids and rest when you have a fever",
    "sick2": "The doctor prescribed antibiotics for my throat infection",
    "sick3": "Coughing and sneezing all week with a blocked nose",
    "chess1": "The queen's gambit is a classic opening",
    "chess2": "Checkmate with a rook and king against a lone king",
    "chess3": "Grandmasters calculate many moves ahead in tournament games",
    "garden1": "Water the lettuce and carrots early in the morning",
    "garden2": "Compost from kitchen scraps feeds the soil of the flower beds",
    "garden3": "Pruning the apple trees in late winter",
    "music1": "Practising scales on the piano every evening",
    "music2": "The orchestra played a symphony by Beethoven",
    "music3": "Tuning the strings of an acoustic guitar",
    "space1": "Astronauts live on the International Space Station for months",
    "space2": "The telescope photographed a distant galaxy",
    "space3": "A rocket launched a satellite into orbit around the planet",
}

#: query -> the documents a person judged relevant to it.
LABELLED_QUERIES = {
    "how to make bread at home": {"bread1", "bread2", "bread3"},
    "fixing and riding a bike": {"bike1", "bike2", "bike3"},
    "animals living in the ocean": {"whale1", "whale2", "whale3"},
    "caring for a pet dog": {"dog1", "dog2", "dog3"},
    "saving and investing money for retirement": {"money1", "money2", "money3"},
    "I caught a cold and feel ill": {"sick1", "sick2", "sick3"},
    "playing chess well": {"chess1", "chess2", "chess3"},
    "growing plants in my backyard": {"garden1", "garden2", "garden3"},
    "playing a musical instrument": {"music1", "music2", "music3"},
    "exploring outer space": {"space1", "space2", "space3"},
}
