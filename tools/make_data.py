"""Write the course's own data into data/: travel Q&A, a general-text corpus and sample images.

Everything here is written by us (facts below, sentence templates, PIL drawings) and fully
deterministic, so a re-run reproduces the committed files byte for byte:

    python tools/make_data.py

The travel set teaches the fine-tuning lab (03); the corpus pre-trains the tiny Phi-3 that every
lab uses on CPU; the images feed the vision lab (02).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"

# ---------------------------------------------------------------- travel facts
# city: (country, best season, why, signature food, getting around, daily budget USD, sight, tip)
CITIES = {
    "Lisbon": ("Portugal", "spring", "mild days and few crowds", "pastel de nata and grilled sardines",
               "the old trams and the metro", 90, "the Belem tower", "wear shoes with grip on the steep cobbled hills"),
    "Kyoto": ("Japan", "autumn", "red maple leaves and cool air", "kaiseki dinners and matcha sweets",
              "city buses and rented bicycles", 120, "the Fushimi Inari shrine gates", "start at temples early, before tour groups arrive"),
    "Marrakech": ("Morocco", "spring", "warm days before the summer heat", "tagine and mint tea",
                  "walking in the medina and petit taxis", 60, "the Jemaa el-Fnaa square", "agree on a taxi fare before you get in"),
    "Reykjavik": ("Iceland", "summer", "long daylight for road trips", "lamb soup and skyr",
                  "a rental car or day tours", 200, "the Hallgrimskirkja church", "pack layers, the weather turns quickly"),
    "Hanoi": ("Vietnam", "autumn", "dry weather and clear skies", "pho and bun cha",
              "walking and motorbike taxis", 40, "the Old Quarter and Hoan Kiem lake", "cross streets slowly and steadily so riders can read you"),
    "Buenos Aires": ("Argentina", "spring", "jacaranda trees in bloom", "steak and empanadas",
                     "the subte metro and buses", 70, "the La Boca neighbourhood", "dinner starts late, often after nine"),
    "Cape Town": ("South Africa", "summer", "sunny beaches and long evenings", "bobotie and fresh seafood",
                  "ride-hailing apps and the MyCiTi bus", 80, "Table Mountain", "check the cable car before you go, wind can close it"),
    "Vancouver": ("Canada", "summer", "dry weather for hiking and kayaking", "salmon and sushi",
                  "the SkyTrain and bike lanes", 150, "Stanley Park", "carry a rain jacket outside summer"),
    "Istanbul": ("Turkey", "autumn", "pleasant temperatures and fewer visitors", "kebabs, meze and baklava",
                 "trams, ferries and the metro", 65, "the Hagia Sophia", "take a public ferry on the Bosphorus, it is cheap and scenic"),
    "Mexico City": ("Mexico", "spring", "dry, sunny days", "tacos al pastor and mole",
                    "the metro and ride-hailing apps", 55, "the Teotihuacan pyramids nearby", "the altitude is high, so drink water and go slowly on day one"),
    "Prague": ("Czech Republic", "spring", "blossoming parks and mild weather", "goulash and trdelnik",
               "trams and walking", 75, "Charles Bridge", "visit the bridge at sunrise for photos without crowds"),
    "Bangkok": ("Thailand", "winter", "the cool, dry season", "pad thai and green curry",
                "the Skytrain and river boats", 45, "the Grand Palace", "cover shoulders and knees when visiting temples"),
    "Sydney": ("Australia", "autumn", "warm sea and calmer crowds", "fish and chips and meat pies",
               "ferries and trains with an Opal card", 160, "the Opera House", "swim between the red and yellow flags on the beach"),
    "Edinburgh": ("Scotland", "summer", "festivals and long evenings", "haggis and shortbread",
                  "walking and buses", 110, "Edinburgh Castle", "book rooms early for the August festival"),
    "Cusco": ("Peru", "winter", "the dry season for Andes treks", "ceviche and roasted guinea pig",
              "walking and colectivo minibuses", 50, "the road to Machu Picchu", "spend two days adjusting to the altitude before trekking"),
    "Seoul": ("South Korea", "autumn", "crisp air and colourful hills", "bibimbap and Korean barbecue",
              "the subway with a T-money card", 95, "Gyeongbokgung palace", "wearing a hanbok gives free palace entry"),
    "Rome": ("Italy", "autumn", "warm days without summer queues", "carbonara and gelato",
             "walking, buses and the metro", 110, "the Colosseum", "book the Vatican museums online to skip the line"),
    "Nairobi": ("Kenya", "summer", "the dry season for safaris", "nyama choma and ugali",
                "ride-hailing apps", 70, "Nairobi National Park", "safari drives start at dawn, when animals are active"),
    "Oslo": ("Norway", "summer", "midnight sun and fjord trips", "salmon and brown cheese",
             "trams, ferries and the metro", 180, "the Opera House roof", "an Oslo Pass covers transport and museums"),
    "Singapore": ("Singapore", "spring", "slightly less rain", "chilli crab and chicken rice",
                  "the MRT metro", 130, "Gardens by the Bay", "hawker centres serve great food for a few dollars"),
    "Havana": ("Cuba", "winter", "dry, warm weather", "ropa vieja and black beans",
               "classic car taxis and walking", 60, "the Malecon seafront", "bring cash, cards often do not work"),
    "Dubrovnik": ("Croatia", "spring", "warm sea without summer crowds", "black risotto and oysters",
                  "walking and local buses", 120, "the old city walls", "walk the walls in the early morning heat-free hours"),
    "Queenstown": ("New Zealand", "summer", "hiking and lake activities", "lamb and the famous burgers",
                   "shuttle buses and rental cars", 140, "the Milford Sound cruise", "book adventure activities a few days ahead"),
    "Amsterdam": ("Netherlands", "spring", "the tulip season", "stroopwafels and herring",
                  "bicycles and trams", 130, "the canal ring", "look both ways for bikes before stepping into a lane"),
    "Cairo": ("Egypt", "winter", "cool days for desert sights", "koshari and falafel",
              "ride-hailing apps and the metro", 45, "the Giza pyramids", "visit the pyramids at opening time to avoid heat"),
    "Barcelona": ("Spain", "autumn", "warm sea and festivals", "paella and tapas",
                  "the metro and walking", 100, "the Sagrada Familia", "keep bags zipped on busy streets and the metro"),
    "Hoi An": ("Vietnam", "spring", "dry weather before the heat", "cao lau noodles and banh mi",
               "bicycles and walking", 35, "the lantern-lit old town", "tailors can make clothes in a day, but allow two"),
    "Vienna": ("Austria", "winter", "Christmas markets and concerts", "schnitzel and apple strudel",
               "trams and the U-Bahn", 120, "the Schonbrunn palace", "standing tickets at the opera cost only a few euros"),
    "Banff": ("Canada", "summer", "turquoise lakes and open trails", "bison burgers and poutine",
              "a rental car or park shuttles", 170, "Lake Louise", "reserve the lake shuttle, parking fills early"),
    "Chiang Mai": ("Thailand", "winter", "cool mornings and clear skies", "khao soi and sticky rice",
                   "songthaew shared trucks", 35, "the Doi Suthep temple", "visit elephant sanctuaries that do not offer rides"),
    "Tbilisi": ("Georgia", "autumn", "the wine harvest season", "khachapuri and khinkali",
                "the metro and ride-hailing apps", 45, "the old town sulphur baths", "try wine from clay qvevri jars"),
    "Quebec City": ("Canada", "winter", "the winter carnival and snowy old town", "poutine and maple taffy",
                    "walking and buses", 120, "the Chateau Frontenac", "dress for minus twenty in January"),
}

# Sixteen phrasings per topic: a model fine-tuned on varied wordings learns the topic, not the sentence
# (with eight, the share of paraphrased questions answered with the right fact was 53–56 % over three seeds;
# with sixteen, 61–80 % over five). Answers name the city after a few words: a model that must copy it as
# the very first token often writes a memorised city instead. Every token of every answer occurs in the
# pre-training corpus (tests/test_data.py): a LoRA teaches the base model a job, not new words. Answers with words
# it never read ("restaurants", "spends") came out garbled ("small familyatia", "traveller in Lisbonoma") and lost
# lab 04's follow-ups. Each topic's answer opens with a word of its own, so the first token picks the topic: when
# four topics opened with "The", its prior won over "In" and no food question got its food answer
# (docs/course-results.md has the rates).
TOPIC_TEMPLATES = {
    "season": ([
        "When is the best time to visit {city}?", "What season should I plan my trip to {city}?",
        "Is {season} a good time to go to {city}?", "What time of year is good for a trip to {city}?",
        "When should I book a holiday in {city}?", "Which month is best for {city}?",
        "When do you recommend going to {city}?", "What is the ideal season for {city}?",
        "When is {city} at its best?", "Which months are best for a visit to {city}?",
        "What is the weather like in {city} and when should I go?", "When is a good time for a holiday in {city}?",
        "In which season is {city} most pleasant?", "When should I travel to {city}?",
        "When is the right time to see {city}?", "Which part of the year is best for {city}?",
        ], "The best time to visit {city} is {season}, thanks to {why}. Many travellers choose it, so book early."),
    "food": ([
        "What should I eat in {city}?", "Which local dishes should I try in {city}?",
        "I love food. What is a must-try in {city}?", "What is the signature dish of {city}?",
        "What food is typical in {city}?", "Recommend a meal to try in {city}.",
        "What is the local specialty in {city}?", "What do locals eat in {city}?",
        "What are the best things to eat in {city}?", "Which dish is famous in {city}?",
        "What should I order at a restaurant in {city}?", "What food is {city} famous for?",
        "What is the most popular food in {city}?", "Where can I eat well in {city}, and what?",
        "Which meals do people love in {city}?", "What is the best dish to taste in {city}?",
        ], "In {city}, try {food}. Local markets and street food trucks serve it fresh and cheap."),
    "transport": ([
        "How do I get around {city}?", "What is the easiest way to move around {city}?",
        "Do I need a car in {city}?", "What transport should I use in {city}?",
        "How do I travel around {city}?", "Is public transport good in {city}?",
        "How can I get across {city}?", "What is the best way to get about in {city}?",
        "How do people travel around {city}?", "What is the quickest way to get around {city}?",
        "Should I take a taxi or a bus in {city}?", "How should I get from one part of {city} to another?",
        "What is the cheapest way to get around {city}?", "How do tourists travel in {city}?",
        "What kind of transport does {city} have?", "How do I reach the sights of {city}?",
        ], "To get around {city}, use {transport}. Many visitors use day tickets, which make rides cheap."),
    "budget": ([
        "How much money do I need per day in {city}?", "Is {city} expensive for backpackers?",
        "What daily budget should I plan for {city}?", "How much does a day in {city} cost?",
        "Is {city} cheap to visit?", "How much should I budget for {city}?",
        "How many dollars should I bring for {city}?", "What does a trip to {city} cost per day?",
        "How expensive is {city}?", "What is the daily cost of a trip to {city}?",
        "How much will I spend each day in {city}?", "How much cash do I need for a day in {city}?",
        "Is {city} a pricey place to visit?", "What is the price of one day in {city}?",
        "How much does it cost to stay in {city} for a day?", "What should a day in {city} cost me?",
        ], "Travellers in {city} spend about {budget} US dollars a day on rooms, food and transport. Local street food costs less."),
    "sight": ([
        "What is the one sight I should not miss in {city}?", "What is the top attraction in {city}?",
        "I have one day in {city}. What should I see?", "What should I visit in {city}?",
        "Which attraction is a must in {city}?", "What is the best-known landmark of {city}?",
        "Which famous place should I see in {city}?", "What is worth a visit in {city}?",
        "What is the main sight in {city}?", "Which place is famous in {city}?",
        "What is the most popular attraction in {city}?", "Where should I go first in {city}?",
        "What landmark is {city} famous for?", "What must I see in {city}?",
        "Which sight is worth the trip to {city}?", "What is the highlight of {city}?",
        ], "Visitors to {city} should not skip {sight}. Many go early in the day, then spend the afternoon walking the nearby streets."),
    "tip": ([
        "Any practical tip for a first trip to {city}?", "What should I know before going to {city}?",
        "Give me one piece of advice for visiting {city}.", "Do you have a travel tip for {city}?",
        "What is good to know about visiting {city}?", "Any advice for a trip to {city}?",
        "What do visitors to {city} often forget?", "What is one thing travellers to {city} should do?",
        "Got a tip for someone heading to {city}?", "What should I keep in mind in {city}?",
        "Is there anything I should know about {city}?", "What advice would you give a visitor to {city}?",
        "Any tips for {city}?", "What is your best advice for {city}?",
        "What should I be careful about in {city}?", "What do locals wish visitors to {city} knew?",
        ], "One good tip for {city}: {tip}. Travellers should keep cash and cards in zipped bags."),
    "country": ([
        "Which country is {city} in?", "Where is {city}?",
        "{city} is in which country?", "Which nation is {city} located in?",
        "In what country is {city}?", "What country does {city} belong to?",
        "Where in the world is {city}?", "Which country do I fly to for {city}?",
        "What country is home to {city}?", "What country will I be in when I visit {city}?",
        "In which country is {city} located?", "{city} belongs to which country?",
        "Which country has the city of {city}?", "Tell me the country of {city}.",
        "What country do I visit to see {city}?", "Is {city} a city in which country?",
        ], "A visit to {city} means a visit to {country}. Travellers should check entry to {country} online early."),
}

# Lab 03 asks the fine-tuned model these: other words than TOPIC_TEMPLATES (the training and eval prompts),
# so a right answer means the model learned the job, not the questions. Each row names the fact that a right
# answer states (`fact`): a distinctive piece of the city's entry, matched case-insensitively.
PARAPHRASE_TEMPLATES = {
    "season": ["Which time of year suits a holiday in {city}?", "When would you go to {city}?"],
    "food": ["What dish is {city} known for?", "Which food do people enjoy in {city}?"],
    "transport": ["What is the best way to travel across {city}?", "How do visitors move from place to place in {city}?"],
    "budget": ["How costly is one day in {city}?", "How many dollars a day does {city} cost?"],
    "sight": ["Which landmark in {city} is worth seeing?", "What is the most famous place in {city}?"],
    "tip": ["What advice do you have for travellers in {city}?", "What do first-time visitors to {city} need to know?"],
    "country": ["In which country will I find {city}?", "What country is {city} part of?"],
}


def key_fact(city: str, topic: str) -> str:
    """The words a right answer about `topic` in `city` contains (first dish, sight without "the", ...)."""
    country, season, why, food, transport, budget, sight, tip = CITIES[city]
    first = re.split(r",| and ", {"food": food, "transport": transport}.get(topic, ""))[0].strip()
    return {"season": why, "food": first, "transport": first, "budget": f"{budget} US dollars",
            "sight": re.sub(r"^the ", "", sight), "tip": " ".join(tip.split()[:4]), "country": country}[topic]


def paraphrase_questions() -> list[dict]:
    return [{"prompt": prompt.format(city=city), "city": city, "topic": topic, "fact": key_fact(city, topic)}
            for city in CITIES for topic, prompts in PARAPHRASE_TEMPLATES.items() for prompt in prompts]


# Follow-up questions: a second turn about the same city, named only by "there" or "it". The answer must take
# the city from the turn before. Lab 03 trains on FOLLOWUP_TEMPLATES; lab 04 measures on FOLLOWUP_ASKED,
# worded unlike them and unlike every single-turn template.
FOLLOWUP_TEMPLATES = {
    "season": ["When should I go there?", "And what is the best season to go?", "When is it nicest there?",
               "What time of year is best there?", "And when should I book?", "Which season suits it best?"],
    "food": ["What should I eat there?", "And the food there?", "Which dishes should I try there?",
             "What do people eat there?", "And what should I order?", "What is the local dish there?"],
    "transport": ["How do I get around there?", "And how do I move around?", "What transport is there?",
                  "Do I need a car there?", "And the buses or trains?", "How do people travel there?"],
    "budget": ["How much does a day there cost?", "Is it expensive there?", "And what budget do I need?",
               "How much money should I bring there?", "Is it cheap?", "What does a day there cost?"],
    "sight": ["What should I see there?", "And the top sight there?", "Which place there is famous?",
              "What is the main attraction there?", "And what should I visit?", "What is worth seeing there?"],
    "tip": ["Any tip for a trip there?", "What should I know before going there?", "And any advice?",
            "Anything I should keep in mind there?", "Any tips for it?", "What do visitors there forget?"],
    "country": ["Which country is it in?", "And what country is that?", "Where is it?",
                "Which country is that city in?", "In which country is it?", "What country is it part of?"],
}
FOLLOWUP_ASKED = {
    "season": "When is the nicest time to be there?",
    "food": "What would I have for dinner there?",
    "transport": "What is the handiest way to move about once I am there?",
    "budget": "What would a day there cost me?",
    "sight": "What should I not miss while I am there?",
    "tip": "Any advice for my stay there?",
    "country": "Which country is that in?",
}


def followup_pairs(single: list[dict], per_city: int = 28, seed: int = 3) -> list[dict]:
    """Two-turn chats for training: a single-turn pair, then a follow-up on another topic of the same city.

    The earlier turn travels in `prompt`, written in the chat template, so Olive's one-turn `--text_template`
    renders the whole conversation exactly as the chat template does."""
    rng = random.Random(seed)
    by_city: dict[str, list[dict]] = {}
    for row in single:
        if row["city"]:
            by_city.setdefault(row["city"], []).append(row)
    out = []
    for city in CITIES:
        for first in rng.sample(by_city[city], per_city):
            topic = rng.choice([t for t in FOLLOWUP_TEMPLATES if t != first["topic"]])
            answer = next(r["response"] for r in by_city[city] if r["topic"] == topic)
            prompt = (f"{first['prompt']}<|end|>\n<|assistant|>\n{first['response']}<|end|>\n<|user|>\n"
                      f"{rng.choice(FOLLOWUP_TEMPLATES[topic][:3])}")
            out.append({"prompt": prompt, "response": answer, "topic": topic, "city": city})
    return out


def followup_questions(seed: int = 4) -> list[dict]:
    """Lab 04's two-turn questions: each paraphrased question, then FOLLOWUP_ASKED on another topic."""
    rng = random.Random(seed)
    out = []
    for row in paraphrase_questions()[::2]:
        topic = rng.choice([t for t in FOLLOWUP_ASKED if t != row["topic"]])
        out.append({"prompt": row["prompt"], "followup": FOLLOWUP_ASKED[topic], "city": row["city"],
                    "topic": topic, "fact": key_fact(row["city"], topic)})
    return out


GENERAL_QA = [
    ("How early should I arrive at the airport for an international flight?",
     "Arrive about three hours before an international flight. Security and passport lines can be slow at busy times."),
    ("What should I pack for a week-long trip?",
     "Pack light: clothes for four days that you can wash, comfortable shoes, a rain layer, chargers and a small first aid kit."),
    ("How do I avoid jet lag?",
     "Shift your sleep an hour a day before you travel, drink water on the flight, and get daylight on arrival."),
    ("Is travel insurance worth it?",
     "Yes for most trips. It covers medical costs, cancellations and lost bags, which can cost far more than the policy."),
    ("How can I save money on flights?",
     "Be flexible with dates, compare nearby airports, and book domestic flights one to three months ahead."),
    ("What is the best way to carry money abroad?",
     "Carry a card with no foreign fees, a backup card kept separately, and a little local cash for small shops."),
    ("How do I stay safe when travelling alone?",
     "Share your plans with someone at home, arrive in new places in daylight, and trust your instincts."),
    ("Should I learn some of the local language?",
     "Yes, a few words like hello, please and thank you go a long way and people appreciate the effort."),
    ("How do I find good local food?",
     "Eat where locals queue, ask your host for their favourite place, and try the daily lunch menus."),
    ("What documents do I need to travel abroad?",
     "You need a passport valid for at least six months, any visa the country requires, and proof of onward travel."),
    ("How do I handle a lost passport abroad?",
     "Report it to the local police, then contact your embassy for an emergency travel document."),
    ("Is it better to book hotels in advance?",
     "Book the first nights and any peak dates in advance; keep the rest flexible if you like to wander."),
]

CORPUS_SUBJECTS = ["the river", "a small bird", "the old baker", "our teacher", "the morning train", "a quiet cat",
                   "the wind", "the young farmer", "my neighbour", "the library", "a tall tree", "the children",
                   "the sea", "a clever fox", "the market", "the moon", "the engineer", "a heavy storm"]
CORPUS_VERBS = ["carried", "watched", "found", "painted", "followed", "built", "remembered", "opened", "crossed",
                "cleaned", "described", "discovered", "measured", "shared", "answered", "lifted"]
CORPUS_OBJECTS = ["a wooden box", "the bright lamp", "the long road", "a bowl of soup", "the heavy door",
                  "a red kite", "the green hills", "an old map", "the stone bridge", "a warm blanket",
                  "the tiny seed", "a paper boat", "the broken clock", "the evening sky", "a basket of apples"]
CORPUS_PLACES = ["near the harbour", "in the garden", "after the rain", "before dinner", "at the edge of the forest",
                 "under the bridge", "in the small village", "during the winter", "on a sunny afternoon",
                 "behind the school", "along the quiet street", "at dawn"]
CORPUS_REASONS = ["because it was late", "so that everyone could see", "although nobody asked",
                  "while the others slept", "as the bells rang", "because the work mattered",
                  "until the light faded", "and then rested for a while"]
CORPUS_FACTS = [
    "Water boils at one hundred degrees at sea level.",
    "Plants turn sunlight, water and air into sugar.",
    "The heart pumps blood through the body.",
    "A year has twelve months and four seasons.",
    "Bees carry pollen from flower to flower.",
    "Ice floats because it is lighter than water.",
    "The earth turns once a day around its axis.",
    "Bread rises because yeast makes small bubbles of gas.",
    "Sound travels faster through water than through air.",
    "Clouds form when warm air rises and cools.",
    "Numbers can be added, subtracted, multiplied and divided.",
    "A triangle has three sides and three corners.",
]


# What a pre-trained model knows about each city, said in several ways: guide-book sentences and FAQ pages.
# Pre-training on them teaches the facts and how questions about them are worded; lab 03's adapter then only
# has to teach the chat answer. The FAQ questions are worded unlike TOPIC_TEMPLATES and PARAPHRASE_TEMPLATES.
FACT_TEMPLATES = {
    "season": ["The best season for {city} is {season}, with {why}.", "Many travellers choose {season} for {city} because of {why}.",
               "{city} is at its nicest in {season}, thanks to {why}.", "In {season}, {city} offers {why}.",
               "The best time of year for a holiday in {city} is {season}, with {why}."],
    "food": ["The famous dish of {city} is {food}.", "People in {city} enjoy {food}.", "Local cooking in {city} means {food}.",
             "A typical meal in {city} is {food}.", "{city} is known for {food}.", "The local food of {city} is {food}."],
    "transport": ["Visitors travel across {city} by {transport}.", "To move around {city}, people use {transport}.",
                  "In {city}, most visitors get around by {transport}.",
                  "Getting from place to place in {city} is easy with {transport}."],
    "budget": ["One day in {city} costs about {budget} US dollars.", "Travellers spend about {budget} US dollars a day in {city}.",
               "A day in {city} can cost about {budget} dollars.", "{city} costs a visitor about {budget} US dollars a day."],
    "sight": ["The most famous landmark in {city} is {sight}.", "Visitors to {city} go to see {sight}.",
              "A famous place in {city} is {sight}.", "The landmark everyone visits in {city} is {sight}."],
    "tip": ["Travellers say that in {city} you should {tip}.", "A good piece of advice for {city}: {tip}.",
            "Visitors to {city} should know this: {tip}."],
    "country": ["{city} is a city in {country}.", "{city} lies in {country}.", "The country of {city} is {country}.",
                "{city} is part of {country}."],
}
FAQ_TEMPLATES = {
    "season": ["What season is best in {city}?", "When is {city} at its nicest?", "Which months are good for {city}?",
               "What is the best time of year for {city}?", "When should a holiday in {city} be planned?",
               "When do people like to go to {city}?"],
    "food": ["What do people eat in {city}?", "Which meal is typical in {city}?", "What can I taste in {city}?",
             "What is the famous dish of {city}?", "What is the local cuisine of {city}?", "Which food is {city} famous for?"],
    "transport": ["How do people get around {city}?", "How can I move around {city}?", "Which transport works in {city}?",
                  "How do visitors travel in {city}?", "What is the way to go from place to place in {city}?",
                  "How should I travel around {city}?"],
    "budget": ["How much does a day in {city} cost?", "Is {city} expensive?", "How much do travellers spend in {city}?",
               "How costly is {city}?", "How many dollars do I need in {city}?", "What does one day in {city} cost?"],
    "sight": ["What is worth a visit in {city}?", "What should visitors see in {city}?", "Which place is the pride of {city}?",
              "What is the famous landmark of {city}?", "Which attraction is best in {city}?",
              "What place in {city} is worth seeing?"],
    "tip": ["What should travellers know about {city}?", "What is a good tip for {city}?", "Any advice for {city}?",
            "What advice helps visitors in {city}?", "What do travellers in {city} need to know?",
            "What is one piece of advice for {city}?"],
    "country": ["Which country has {city}?", "Where is {city} located?", "{city} lies in which country?",
                "In what country is {city}?", "Which nation is {city} part of?", "What country will I find {city} in?"],
}


def city_facts(city: str) -> dict:
    country, season, why, food, transport, budget, sight, tip = CITIES[city]
    return dict(city=city, country=country, season=season, why=why, food=food, transport=transport, budget=budget,
                sight=sight, tip=tip)


def city_paragraphs(n: int, seed: int) -> list[str]:
    """Guide-book paragraphs, each about one city: coherent text teaches a model to keep to the city named."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        facts = city_facts(rng.choice(list(CITIES)))
        topics = rng.sample(list(FACT_TEMPLATES), rng.randint(3, 6))
        out.append(" ".join(rng.choice(FACT_TEMPLATES[t]).format(**facts) for t in topics))
    return out


def faq_pages(n: int, seed: int) -> list[str]:
    """FAQ pages about one city each ("Q: ... A: ..."), as a web crawl would hold: plain text, not chat."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        facts = city_facts(rng.choice(list(CITIES)))
        lines = [f"Questions about {facts['city']}."]
        for topic in rng.sample(list(FAQ_TEMPLATES), rng.randint(2, 4)):
            lines += ["Q: " + rng.choice(FAQ_TEMPLATES[topic]).format(**facts),
                      "A: " + rng.choice(FACT_TEMPLATES[topic]).format(**facts)]
        out.append("\n".join(lines))
    return out


# Lab 04's structured answer, as `train_json.jsonl` writes it. Bounded strings: an answer always fits its tokens.
ANSWER_SCHEMA = {
    "title": "Travel answer",
    "type": "object",
    "properties": {"answer": {"type": "string", "maxLength": 120},
                   "city": {"type": "string", "maxLength": 40},
                   "country": {"type": "string", "maxLength": 40}},
    "required": ["answer", "city", "country"],
    "additionalProperties": False,
}

# Keys of the JSON records below: the city's facts under the names a travel data file would use.
RECORD_FIELDS = {"country": "country", "best_season": "season", "food": "food", "getting_around": "transport",
                 "budget_usd": "budget", "sight": "sight", "tip": "tip"}


def json_records(n: int, seed: int) -> list[str]:
    """Travel data files: one to three JSON objects per document, each a city and a few of its facts.

    A web crawl holds JSON, and a model that never read any cannot write it: SentencePiece spells "Kyoto" after a
    quote as K-y-oto, pieces that never start a word in plain text, and `"`, `":` are tokens of their own. Without
    these records, lab 04's JSON adapter put the city asked in the `city` field in 15-29 % of answers even with
    guidance (300 and 600 steps); with them ... (docs/course-results.md)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lines = []
        for _ in range(rng.randint(1, 3)):
            facts = city_facts(rng.choice(list(CITIES)))
            keys = rng.sample(list(RECORD_FIELDS), rng.randint(1, 4))
            record = {"city": facts["city"], **{key: facts[RECORD_FIELDS[key]] for key in keys}}
            if rng.random() < 0.3:       # a sentence inside a string: its first word has no leading space either
                topic = rng.choice(list(FACT_TEMPLATES))
                record["note"] = rng.choice(FACT_TEMPLATES[topic]).format(**facts)
            if rng.random() < 0.2:       # some files nest the facts under the city
                record = {"city": facts["city"], "facts": {key: value for key, value in record.items() if key != "city"}}
            lines.append(json.dumps(record, ensure_ascii=False))
        out.append("\n".join(lines))
    return out


CHAT_PROMPTS = ["Tell me a fact.", "Say something true.", "Teach me one thing.", "Write a short sentence.",
                "Tell me a short story.", "Tell me about {thing}.", "What did {thing} do?"]


def chat_exchanges(n: int, seed: int) -> list[str]:
    """General one-turn chats in Phi-3's format, so the base model knows the chat tokens.

    Like an instruct model's pre-training: general answers about the corpus's things, no travel Q&A
    (answering travel questions in chat is what lab 03's adapter teaches)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = rng.choice(CHAT_PROMPTS)
        if "{thing}" in prompt:
            thing = rng.choice(CORPUS_SUBJECTS)
            prompt = prompt.format(thing=thing)
            answer = " ".join(f"{thing.capitalize()} {rng.choice(CORPUS_VERBS)} {rng.choice(CORPUS_OBJECTS)} "
                              f"{rng.choice(CORPUS_PLACES)}." for _ in range(rng.randint(1, 2)))
        elif "fact" in prompt or "true" in prompt or "thing" in prompt:
            answer = rng.choice(CORPUS_FACTS)
        else:
            answer = " ".join(corpus_sentences(rng.randint(1, 3), rng.randint(0, 10**6)))
        out.append(f"<|user|>\n{prompt}<|end|>\n<|assistant|>\n{answer}<|end|>")
    return out


def travel_pairs() -> list[dict]:
    pairs = []
    for city, (country, season, why, food, transport, budget, sight, tip) in CITIES.items():
        facts = dict(city=city, country=country, season=season, why=why, food=food,
                     transport=transport, budget=budget, sight=sight, tip=tip)
        for topic, (prompts, answer) in TOPIC_TEMPLATES.items():
            for prompt in prompts:
                pairs.append({"prompt": prompt.format(**facts), "response": answer.format(**facts),
                              "topic": topic, "city": city})
    for prompt, response in GENERAL_QA:
        pairs.append({"prompt": prompt, "response": response, "topic": "general", "city": ""})
    return pairs


def split_travel(pairs: list[dict], eval_share: float = 0.15) -> tuple[list[dict], list[dict]]:
    rng = random.Random(7)
    shuffled = pairs[:]
    rng.shuffle(shuffled)
    n_eval = int(len(shuffled) * eval_share)
    return shuffled[n_eval:], shuffled[:n_eval]


def corpus_sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.15:
            out.append(rng.choice(CORPUS_FACTS))
        else:
            subject = rng.choice(CORPUS_SUBJECTS)
            sentence = f"{subject.capitalize()} {rng.choice(CORPUS_VERBS)} {rng.choice(CORPUS_OBJECTS)} {rng.choice(CORPUS_PLACES)}"
            if kind > 0.6:
                sentence += f" {rng.choice(CORPUS_REASONS)}"
            out.append(sentence + ".")
    return out


def corpus_text(n_sentences: int, n_city: int, n_faq: int, n_records: int, n_chats: int, seed: int) -> str:
    """General paragraphs, city paragraphs, FAQ pages and JSON records in a shuffled order, then chats."""
    general = corpus_sentences(n_sentences, seed)
    docs = [" ".join(general[i:i + 4]) for i in range(0, len(general), 4)]
    docs += city_paragraphs(n_city, seed + 100) + faq_pages(n_faq, seed + 200) + json_records(n_records, seed + 500)
    random.Random(seed + 300).shuffle(docs)
    return "\n\n".join(docs + chat_exchanges(n_chats, seed + 400)) + "\n"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def draw_images(folder: Path) -> None:
    from PIL import Image, ImageDraw

    def beach(d, w, h):
        d.rectangle([0, 0, w, h * 0.55], fill=(120, 190, 240))
        d.rectangle([0, h * 0.55, w, h * 0.75], fill=(20, 100, 180))
        d.rectangle([0, h * 0.75, w, h], fill=(240, 215, 150))
        d.ellipse([w * 0.7, h * 0.08, w * 0.85, h * 0.23], fill=(255, 220, 60))

    def mountain(d, w, h):
        d.rectangle([0, 0, w, h], fill=(170, 210, 250))
        d.polygon([(0, h), (w * 0.35, h * 0.2), (w * 0.7, h)], fill=(100, 100, 110))
        d.polygon([(w * 0.35, h), (w * 0.7, h * 0.35), (w, h)], fill=(80, 90, 100))
        d.polygon([(w * 0.29, h * 0.32), (w * 0.35, h * 0.2), (w * 0.41, h * 0.32)], fill=(250, 250, 250))
        d.rectangle([0, h * 0.88, w, h], fill=(60, 140, 60))

    def city(d, w, h):
        d.rectangle([0, 0, w, h], fill=(40, 40, 90))
        rng = random.Random(3)
        x = 0
        while x < w:
            bw, bh = rng.randint(30, 70), rng.randint(int(h * 0.3), int(h * 0.8))
            d.rectangle([x, h - bh, x + bw, h], fill=(rng.randint(60, 110),) * 3)
            for wy in range(h - bh + 8, h - 8, 16):
                for wx in range(x + 6, x + bw - 8, 14):
                    if rng.random() < 0.5:
                        d.rectangle([wx, wy, wx + 6, wy + 8], fill=(250, 230, 120))
            x += bw + 4

    for name, painter, size in [("beach.png", beach, (640, 420)), ("mountain.png", mountain, (500, 500)),
                                ("city_night.png", city, (720, 360))]:
        img = Image.new("RGB", size)
        painter(ImageDraw.Draw(img), *size)
        img.save(folder / name)


def main() -> None:
    train, eval_ = split_travel(travel_pairs())
    # Follow-ups come after the single-turn pairs, built from training pairs only; eval.jsonl stays single-turn.
    write_jsonl(DATA / "travel" / "train.jsonl", train + followup_pairs(train))
    write_jsonl(DATA / "travel" / "eval.jsonl", eval_)
    # A second style for lab 04's adapter switching: the same questions, one-sentence answers.
    brief = [{**row, "response": row["response"].split(". ")[0].rstrip(".") + "."} for row in train]
    write_jsonl(DATA / "travel" / "train_brief.jsonl", brief)
    # A third style, for lab 04's structured answers: the same questions, answered with one JSON object. The answer
    # comes first, where the question still decides its topic (after city and country it named the question's topic
    # in 25 % of paraphrased questions, first in 93 %), and without its full stop: the corpus's records end a
    # sentence only at the end of an object, so `.",` is a token the model never read (it wrote "kking" there).
    write_jsonl(DATA / "travel" / "train_json.jsonl", [
        {**row, "response": json.dumps({"answer": row["response"].rstrip("."), "city": row["city"],
                                        "country": CITIES[row["city"]][0]}, ensure_ascii=False)}
        for row in brief if row["city"]])
    write_jsonl(DATA / "travel" / "cities.jsonl", [city_facts(city) for city in CITIES])
    (DATA / "travel" / "answer.schema.json").write_text(json.dumps(ANSWER_SCHEMA, indent=2) + "\n", encoding="utf-8")
    write_jsonl(DATA / "travel" / "paraphrase.jsonl", paraphrase_questions())
    write_jsonl(DATA / "travel" / "followup.jsonl", followup_questions())
    # 3,000 general chats: with 2,000 the base model (Phi-3.5's tokenizer, width 192) carried the FAQ pages' answers
    # into chat and named the city in 50 % of lab 03's travel questions, leaving the adapter little to teach.
    (DATA / "corpus" / "train.txt").write_text(corpus_text(6000, 2500, 4000, 1200, 3000, seed=1), encoding="utf-8")
    (DATA / "corpus" / "heldout.txt").write_text(corpus_text(500, 160, 200, 60, 0, seed=2), encoding="utf-8")
    draw_images(DATA / "images")
    print(f"travel: {len(train)} train / {len(eval_)} eval pairs; corpus and images written under {DATA}")


if __name__ == "__main__":
    main()
