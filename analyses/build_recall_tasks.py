"""Build the bundled factual-recall tasks data/tasks/<task>.jsonl (run once; the output is committed).

Each task is a few-shot template with a subject slot and a table subject -> answer. Every subject becomes one
clean prompt; its corrupted partner is another subject of the same task whose full prompt has the SAME number
of tokens under the embedded Gemma 3 tokenizer and whose answer has a different first token (chosen with a
fixed seed). Subjects that have no such partner are dropped and reported. Few-shot subjects are excluded.
Templates were chosen by measuring Gemma 3 270M's top-1 accuracy on several candidates (the functional-group
task leaves out nitriles and thiols, which the model never got right; element group and state at room
temperature were dropped as tasks because the model did no better than the majority class on them).

    HF_HUB_OFFLINE=1 .venv/bin/python analyses/build_recall_tasks.py
"""
from __future__ import annotations

import json
import random
from collections import defaultdict

from transformers import AutoTokenizer

from circuitclust.models.embedded import ensure_embedded
from circuitclust.resources import data_dir

SEED = 0
MAX_PROMPT_TOKENS = 40

COUNTRY_CAPITAL = {
    "France": "Paris", "Spain": "Madrid", "Italy": "Rome", "Germany": "Berlin", "China": "Beijing",
    "Russia": "Moscow", "Egypt": "Cairo", "Greece": "Athens", "Portugal": "Lisbon", "Ireland": "Dublin",
    "Norway": "Oslo", "Sweden": "Stockholm", "Finland": "Helsinki", "Denmark": "Copenhagen", "Poland": "Warsaw",
    "Austria": "Vienna", "Hungary": "Budapest", "Belgium": "Brussels", "the Netherlands": "Amsterdam",
    "the Czech Republic": "Prague", "Romania": "Bucharest", "Bulgaria": "Sofia", "Serbia": "Belgrade",
    "Croatia": "Zagreb", "Ukraine": "Kyiv", "Turkey": "Ankara", "Iran": "Tehran", "Iraq": "Baghdad",
    "Syria": "Damascus", "Lebanon": "Beirut", "Jordan": "Amman", "Saudi Arabia": "Riyadh", "India": "New Delhi",
    "Pakistan": "Islamabad", "Bangladesh": "Dhaka", "Nepal": "Kathmandu", "Thailand": "Bangkok",
    "Vietnam": "Hanoi", "Indonesia": "Jakarta", "the Philippines": "Manila", "South Korea": "Seoul",
    "North Korea": "Pyongyang", "Mongolia": "Ulaanbaatar", "Afghanistan": "Kabul", "Kenya": "Nairobi",
    "Ethiopia": "Addis Ababa", "Nigeria": "Abuja", "Ghana": "Accra", "Morocco": "Rabat", "Algeria": "Algiers",
    "Tunisia": "Tunis", "Libya": "Tripoli", "Sudan": "Khartoum", "Senegal": "Dakar", "Uganda": "Kampala",
    "Zimbabwe": "Harare", "Argentina": "Buenos Aires", "Chile": "Santiago", "Peru": "Lima", "Colombia": "Bogotá",
    "Venezuela": "Caracas", "Cuba": "Havana", "Mexico": "Mexico City", "Canada": "Ottawa",
    "Australia": "Canberra", "New Zealand": "Wellington", "Cyprus": "Nicosia", "Iceland": "Reykjavik",
    "Estonia": "Tallinn", "Latvia": "Riga", "Lithuania": "Vilnius", "Slovakia": "Bratislava", "Qatar": "Doha",
    "Ecuador": "Quito", "Uruguay": "Montevideo", "Malaysia": "Kuala Lumpur", "Sri Lanka": "Colombo",
    "Jamaica": "Kingston", "Brazil": "Brasília", "Switzerland": "Bern",
}
CITY_COUNTRY = {
    "Munich": "Germany", "Hamburg": "Germany", "Frankfurt": "Germany", "Cologne": "Germany", "Dresden": "Germany",
    "Osaka": "Japan", "Hiroshima": "Japan", "Nagoya": "Japan", "Sapporo": "Japan", "Shanghai": "China",
    "Shenzhen": "China", "Mumbai": "India", "Bangalore": "India", "Kolkata": "India", "Chennai": "India",
    "Milan": "Italy", "Naples": "Italy", "Venice": "Italy", "Florence": "Italy", "Turin": "Italy",
    "Barcelona": "Spain", "Seville": "Spain", "Valencia": "Spain", "Bilbao": "Spain", "Marseille": "France",
    "Lyon": "France", "Bordeaux": "France", "Toulouse": "France", "Manchester": "England", "Liverpool": "England",
    "Birmingham": "England", "Glasgow": "Scotland", "Edinburgh": "Scotland", "Toronto": "Canada",
    "Vancouver": "Canada", "Montreal": "Canada", "Calgary": "Canada", "Sydney": "Australia",
    "Melbourne": "Australia", "Perth": "Australia", "Brisbane": "Australia", "Rio de Janeiro": "Brazil",
    "Sao Paulo": "Brazil", "Istanbul": "Turkey", "Izmir": "Turkey", "St Petersburg": "Russia",
    "Novosibirsk": "Russia", "Krakow": "Poland", "Gdansk": "Poland", "Porto": "Portugal", "Antwerp": "Belgium",
    "Zurich": "Switzerland", "Geneva": "Switzerland", "Casablanca": "Morocco", "Marrakesh": "Morocco",
    "Alexandria": "Egypt", "Lagos": "Nigeria", "Karachi": "Pakistan", "Lahore": "Pakistan",
    "Guadalajara": "Mexico", "Medellin": "Colombia", "Salzburg": "Austria", "Gothenburg": "Sweden",
    "Bergen": "Norway", "Mombasa": "Kenya",
}
ELEMENT_SYMBOL = {
    "hydrogen": "H", "helium": "He", "lithium": "Li", "beryllium": "Be", "boron": "B", "carbon": "C",
    "nitrogen": "N", "oxygen": "O", "fluorine": "F", "neon": "Ne", "sodium": "Na", "magnesium": "Mg",
    "aluminum": "Al", "silicon": "Si", "phosphorus": "P", "sulfur": "S", "chlorine": "Cl", "argon": "Ar",
    "potassium": "K", "calcium": "Ca", "scandium": "Sc", "titanium": "Ti", "vanadium": "V", "chromium": "Cr",
    "manganese": "Mn", "iron": "Fe", "cobalt": "Co", "nickel": "Ni", "copper": "Cu", "zinc": "Zn",
    "gallium": "Ga", "germanium": "Ge", "arsenic": "As", "selenium": "Se", "bromine": "Br", "krypton": "Kr",
    "rubidium": "Rb", "strontium": "Sr", "zirconium": "Zr", "molybdenum": "Mo", "silver": "Ag", "cadmium": "Cd",
    "tin": "Sn", "antimony": "Sb", "iodine": "I", "xenon": "Xe", "cesium": "Cs", "barium": "Ba",
    "tungsten": "W", "platinum": "Pt", "gold": "Au", "mercury": "Hg", "lead": "Pb", "bismuth": "Bi",
    "radon": "Rn", "radium": "Ra", "uranium": "U", "plutonium": "Pu", "palladium": "Pd", "nobelium": "No",
    "thorium": "Th", "iridium": "Ir", "osmium": "Os", "tellurium": "Te", "neodymium": "Nd",
}
SYMBOL_ELEMENT = {sym: name for name, sym in ELEMENT_SYMBOL.items()}
COMPOUND_FORMULA = {
    "water": "H2O", "carbon dioxide": "CO2", "carbon monoxide": "CO", "methane": "CH4", "ammonia": "NH3",
    "sodium chloride": "NaCl", "hydrochloric acid": "HCl", "sulfuric acid": "H2SO4", "nitric acid": "HNO3",
    "calcium carbonate": "CaCO3", "sodium hydroxide": "NaOH", "potassium hydroxide": "KOH",
    "glucose": "C6H12O6", "hydrogen peroxide": "H2O2", "ozone": "O3", "sulfur dioxide": "SO2",
    "nitrogen dioxide": "NO2", "nitrous oxide": "N2O", "calcium oxide": "CaO", "magnesium oxide": "MgO",
    "potassium chloride": "KCl", "sodium bicarbonate": "NaHCO3", "sodium carbonate": "Na2CO3", "ethane": "C2H6",
    "propane": "C3H8", "butane": "C4H10", "benzene": "C6H6", "methanol": "CH3OH", "silicon dioxide": "SiO2",
    "copper sulfate": "CuSO4", "silver nitrate": "AgNO3", "calcium chloride": "CaCl2",
    "magnesium sulfate": "MgSO4", "hydrogen sulfide": "H2S", "ethene": "C2H4", "ethyne": "C2H2",
    "phosphoric acid": "H3PO4", "sodium nitrate": "NaNO3", "potassium nitrate": "KNO3",
    "ammonium chloride": "NH4Cl", "aluminum oxide": "Al2O3", "zinc oxide": "ZnO", "lithium chloride": "LiCl",
    "sodium fluoride": "NaF", "hydrogen fluoride": "HF", "potassium iodide": "KI", "barium sulfate": "BaSO4",
    "titanium dioxide": "TiO2", "carbon tetrachloride": "CCl4", "iron sulfide": "FeS",
    "sodium sulfate": "Na2SO4", "zinc sulfate": "ZnSO4", "lead nitrate": "Pb(NO3)2",
}
FUNCTIONAL_GROUP = {
    "ethanol": "alcohol", "methanol": "alcohol", "propanol": "alcohol", "butanol": "alcohol",
    "pentanol": "alcohol", "hexanol": "alcohol", "glycerol": "alcohol", "cyclohexanol": "alcohol",
    "methanal": "aldehyde", "ethanal": "aldehyde", "propanal": "aldehyde", "butanal": "aldehyde",
    "formaldehyde": "aldehyde", "acetaldehyde": "aldehyde", "benzaldehyde": "aldehyde", "pentanal": "aldehyde",
    "propanone": "ketone", "butanone": "ketone", "pentanone": "ketone", "acetone": "ketone",
    "cyclohexanone": "ketone", "hexanone": "ketone",
    "ethanoic acid": "carboxylic acid", "methanoic acid": "carboxylic acid", "propanoic acid": "carboxylic acid",
    "butanoic acid": "carboxylic acid", "acetic acid": "carboxylic acid", "benzoic acid": "carboxylic acid",
    "formic acid": "carboxylic acid",
    "ethyl ethanoate": "ester", "methyl ethanoate": "ester", "ethyl acetate": "ester", "methyl acetate": "ester",
    "propyl ethanoate": "ester", "ethyl butanoate": "ester", "methyl butanoate": "ester",
    "methylamine": "amine", "ethylamine": "amine", "propylamine": "amine", "dimethylamine": "amine",
    "trimethylamine": "amine", "aniline": "amine", "butylamine": "amine",
    "ethanamide": "amide", "methanamide": "amide", "propanamide": "amide", "acetamide": "amide",
    "formamide": "amide", "benzamide": "amide",
    "diethyl ether": "ether", "dimethyl ether": "ether", "methoxymethane": "ether", "ethoxyethane": "ether",
    "anisole": "ether",
    "ethene": "alkene", "propene": "alkene", "butene": "alkene", "ethylene": "alkene", "hexene": "alkene",
    "propylene": "alkene",
}

# name: (template with {s}, subject -> answer table, few-shot subjects excluded from the task)
TASKS = {
    "country_capital": ("The capital of Japan is Tokyo. The capital of {s} is", COUNTRY_CAPITAL, ()),
    "city_country": ("Kyoto is a city in Japan. {s} is a city in", CITY_COUNTRY, ()),
    "element_symbol": ("Element: iron. Symbol: Fe.\nElement: {s}. Symbol:", ELEMENT_SYMBOL, ("iron",)),
    "symbol_element": ("Fe is the chemical symbol of iron. Na is the chemical symbol of sodium. {s} is the "
                       "chemical symbol of", SYMBOL_ELEMENT, ("Fe", "Na")),
    "compound_formula": ("The chemical formula of water is H2O. The chemical formula of {s} is",
                         COMPOUND_FORMULA, ("water",)),
    "molecule_functional_group": (
        "ethanol: alcohol. propanal: aldehyde. acetone: ketone. methyl acetate: ester. ethene: alkene. "
        "formic acid: carboxylic acid. {s}:", FUNCTIONAL_GROUP,
        ("ethanol", "propanal", "acetone", "methyl acetate", "ethene", "formic acid")),
}


def build_task(tok, template: str, table: dict[str, str], exclude: tuple[str, ...], rng: random.Random):
    """Rows for one task and the subjects dropped for want of a same-length partner."""
    subjects = [s for s in table if s not in exclude]
    first = {s: tok(" " + table[s], add_special_tokens=False)["input_ids"][0] for s in subjects}
    length = {s: len(tok(template.format(s=s))["input_ids"]) for s in subjects}
    too_long = [s for s in subjects if length[s] >= MAX_PROMPT_TOKENS]
    if too_long:
        raise SystemExit(f"prompts of {too_long} have >= {MAX_PROMPT_TOKENS} tokens")
    by_len = defaultdict(list)
    for s in subjects:
        by_len[length[s]].append(s)
    rows, dropped = [], []
    for s in subjects:
        partners = [t for t in by_len[length[s]] if first[t] != first[s]]
        if not partners:
            dropped.append(s)
            continue
        c = rng.choice(partners)
        rows.append({"prompt": template.format(s=s), "answer": " " + table[s],
                     "corrupted_prompt": template.format(s=c), "corrupted_answer": " " + table[c],
                     "subject": s, "corrupted_subject": c})
    return rows, dropped


def main() -> None:
    tok = AutoTokenizer.from_pretrained(str(ensure_embedded()))
    out = data_dir() / "tasks"
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    for name, (template, table, exclude) in TASKS.items():
        rows, dropped = build_task(tok, template, table, exclude, rng)
        with (out / f"{name}.jsonl").open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"{name}: {len(rows)} prompts, dropped (no same-length partner): {dropped or 'none'}")


if __name__ == "__main__":
    main()
