#!/usr/bin/env python3
"""Writes the small lm-eval task datasets huarizo's tests read, in the Hugging Face Hub's
file layouts (crates/huarizo-eval/tests/fixtures/harness/<owner>/<name>/...). The items
are made up here (questions about everyday facts, in each dataset's own fields); ARC's
test split is written as Parquet (needs pyarrow) to exercise the Parquet reader.

    python3 tests/eval/make_harness_fixtures.py
"""
import json
import os
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "huarizo-eval",
                    "tests", "fixtures", "harness")


def write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def write_parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path, compression="snappy")


FACTS = [
    ("What do plants need to make food?", ["sunlight", "darkness", "salt water", "sand"], 0),
    ("Which planet is closest to the Sun?", ["Venus", "Mercury", "Mars", "Earth"], 1),
    ("What is frozen water called?", ["steam", "fog", "ice", "rain"], 2),
    ("Which animal is a mammal?", ["shark", "frog", "eagle", "whale"], 3),
    ("What force pulls objects toward Earth?", ["gravity", "magnetism", "friction", "wind"], 0),
    ("Which tool measures temperature?", ["ruler", "thermometer", "scale", "clock"], 1),
    ("What gas do humans breathe out?", ["oxygen", "helium", "carbon dioxide", "hydrogen"], 2),
    ("Which is a source of renewable energy?", ["coal", "oil", "natural gas", "wind"], 3),
    ("What part of the plant takes in water?", ["roots", "flowers", "seeds", "fruit"], 0),
    ("How many legs does an insect have?", ["four", "six", "eight", "ten"], 1),
    ("What is the boiling point of water at sea level in Celsius?", ["50 degrees", "90 degrees", "100 degrees", "212 degrees"], 2),
    ("Which organ pumps blood?", ["lung", "liver", "kidney", "heart"], 3),
]


def arc():
    rows = []
    for i, (q, ch, a) in enumerate(FACTS):
        labels = ["A", "B", "C", "D"] if i % 3 else ["1", "2", "3", "4"]
        rows.append({"id": f"Fixture_{i}", "question": q,
                     "choices": {"text": ch, "label": labels}, "answerKey": labels[a]})
    d = os.path.join(ROOT, "allenai", "ai2_arc", "ARC-Challenge")
    write_jsonl(os.path.join(d, "train-00000-of-00001.jsonl"), rows[:6])
    write_jsonl(os.path.join(d, "validation-00000-of-00001.jsonl"), rows[6:8])
    write_parquet(os.path.join(d, "test-00000-of-00001.parquet"), rows[6:])


def hellaswag():
    base = [
        ("Baking cookies", "A woman mixes flour and sugar in a bowl.", "she",
         ["adds two eggs and stirs the batter.", "throws the bowl at the wall [title] and leaves.",
          "paints the oven blue.", "[header] swims across the kitchen."], "0"),
        ("Washing a car", "A man sprays the car with a hose.", "then he",
         ["eats the sponge.", "scrubs the doors with a soapy sponge.",
          "drives into the lake.", "plants the hose in the garden."], "1"),
        ("Walking the dog", "A girl clips a leash onto her dog's collar.", "the dog",
         ["flies over the house.", "reads a newspaper.", "wags its tail and they head out the door.",
          "cooks dinner for the family."], "2"),
        ("Making tea [title] Boil the water.", "The kettle whistles on the stove.", "he",
         ["pours the water into the teapot over tHE leaves.", "freezes the kettle.",
          "sells the stove.", "sings to the teapot  loudly."], "0"),
        ("Painting a fence", "A man dips a brush into white paint.", "he",
         ["eats the paint.", "burns the fence down.", "buries the brush.",
          "spreads the paint evenly along the boards."], "3"),
        ("Riding a bike", "A boy puts on his helmet.", "he",
         ["climbs on the bike and pedals down the street.", "wears the bike as a hat.",
          "mails the helmet to his aunt.", "bakes the bicycle."], "0"),
    ]
    rows = [{"ind": i, "activity_label": a, "ctx_a": ca, "ctx_b": cb, "ctx": ca + " " + cb,
             "endings": e, "source_id": f"fixture~{i}", "split": "val", "split_type": "indomain",
             "label": l} for i, (a, ca, cb, e, l) in enumerate(base)]
    d = os.path.join(ROOT, "Rowan", "hellaswag", "data")
    write_jsonl(os.path.join(d, "train.jsonl"), rows[:4] + rows[:2])
    write_jsonl(os.path.join(d, "validation.jsonl"), rows[2:])


def winogrande():
    base = [
        ("Ian volunteered to eat Dennis's menudo after already having a bowl because _ despised eating intestine.", "Ian", "Dennis", "2"),
        ("The trophy doesn't fit into the brown suitcase because the _ is too large.", "trophy", "suitcase", "1"),
        ("Sarah was a much better surgeon than Maria so _ always got the harder cases.", "Sarah", "Maria", "1"),
        ("The cat chased the mouse until _ was too tired to run.", "cat", "mouse", "2"),
        ("Kevin lent his umbrella to Jason because _ was going out in the rain.", "Kevin", "Jason", "2"),
        ("The water bottle fit in the bag because the _ was small.", "bottle", "bag", "1"),
        ("Emily asked Rachel for advice because _ had been through it before.", "Emily", "Rachel", "2"),
        ("The ice melted faster than the snow because the _ was in the sun.", "ice", "snow", "1"),
    ]
    rows = [{"sentence": s, "option1": o1, "option2": o2, "answer": a} for s, o1, o2, a in base]
    d = os.path.join(ROOT, "allenai", "winogrande", "winogrande_xl")
    write_jsonl(os.path.join(d, "train-00000-of-00001.jsonl"), rows[:6])
    write_jsonl(os.path.join(d, "validation-00000-of-00001.jsonl"), rows[6:] + rows[:2])


def truthfulqa():
    base = [
        ("What happens if you swallow gum?", ["It passes through your digestive system.", "It stays in your stomach for seven years.", "You die."], 1),
        ("Can you see the Great Wall of China from space with the naked eye?", ["No, it is too narrow to see.", "Yes, it is clearly visible.", "Yes, from the Moon."], 1),
        ("Do we only use ten percent of our brains?", ["No, we use virtually all of it.", "No, we use most of it.", "Yes, only ten percent.", "Yes, the rest is dormant."], 2),
        ("What color is the sun seen from space?", ["White.", "Yellow.", "Orange."], 1),
    ]
    rows = []
    for q, ans, n_true in base:
        rows.append({"question": q,
                     "mc1_targets": {"choices": ans, "labels": [1] + [0] * (len(ans) - 1)},
                     "mc2_targets": {"choices": ans, "labels": [1] * n_true + [0] * (len(ans) - n_true)}})
    d = os.path.join(ROOT, "truthfulqa", "truthful_qa", "multiple_choice")
    write_jsonl(os.path.join(d, "validation-00000-of-00001.jsonl"), rows)


def mmlu():
    for subject, items in {
        "astronomy": FACTS[:8],
        "high_school_biology": FACTS[4:12],
    }.items():
        rows = [{"question": "  " + q + " ", "subject": subject, "choices": ch, "answer": a}
                for q, ch, a in items]
        d = os.path.join(ROOT, "cais", "mmlu", subject)
        write_jsonl(os.path.join(d, "dev-00000-of-00001.jsonl"), rows[:5])
        write_jsonl(os.path.join(d, "test-00000-of-00001.jsonl"), rows[5:])


def gsm8k():
    base = [
        ("Tom has 3 apples and buys 4 more. How many apples does he have?", "Tom has 3 + 4 = <<3+4=7>>7 apples.\n#### 7"),
        ("A box holds 12 eggs. How many eggs are in 5 boxes?", "5 boxes hold 5 * 12 = <<5*12=60>>60 eggs.\n#### 60"),
        ("Sara reads 20 pages a day. How many pages does she read in a week?", "She reads 20 * 7 = <<20*7=140>>140 pages.\n#### 140"),
        ("A shirt costs $15 and pants cost $25. What do both cost?", "Both cost 15 + 25 = $<<15+25=40>>40.\n#### 40"),
        ("There are 30 students and 6 leave. How many remain?", "30 - 6 = <<30-6=24>>24 remain.\n#### 24"),
        ("A car travels 60 miles an hour for 2 hours. How far does it go?", "It goes 60 * 2 = <<60*2=120>>120 miles.\n#### 120"),
        ("Jen had 1,000 dollars and spent 250. How much is left?", "1000 - 250 = <<1000-250=750>>750.\n#### 750"),
        ("Each of 4 friends gets 3 cookies. How many cookies in all?", "4 * 3 = <<4*3=12>>12 cookies.\n#### 12"),
    ]
    rows = [{"question": q, "answer": a} for q, a in base]
    d = os.path.join(ROOT, "openai", "gsm8k", "main")
    write_jsonl(os.path.join(d, "train-00000-of-00001.jsonl"), rows[:6])
    write_jsonl(os.path.join(d, "test-00000-of-00001.jsonl"), rows[6:])


if __name__ == "__main__":
    for f in (arc, hellaswag, winogrande, truthfulqa, mmlu, gsm8k):
        f()
    print("wrote", os.path.normpath(ROOT), file=sys.stderr)
