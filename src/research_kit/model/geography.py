"""Luxembourg's 12 cantons and their communes, and the border towns cross-border insured live in.

Populations are approximate (STATEC figures, rounded, for 2024) and serve as
sampling weights for the simulator; postcode ranges are those of the commune's
main localities. Communes of under ~1,000 residents are folded into the list's
neighbours: every canton is represented.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Commune:
    name: str
    canton: str
    population: int
    postcodes: tuple[int, int]  # first and last postcode of its localities


CANTONS: tuple[str, ...] = (
    "Capellen", "Clervaux", "Diekirch", "Echternach", "Esch-sur-Alzette", "Grevenmacher",
    "Luxembourg", "Mersch", "Redange", "Remich", "Vianden", "Wiltz",
)  # fmt: skip

COMMUNES: tuple[Commune, ...] = (
    Commune("Luxembourg", "Luxembourg", 134_700, (1009, 2999)),
    Commune("Hesperange", "Luxembourg", 16_500, (5800, 5899)),
    Commune("Strassen", "Luxembourg", 10_100, (8001, 8099)),
    Commune("Bertrange", "Luxembourg", 8_900, (8050, 8081)),
    Commune("Walferdange", "Luxembourg", 8_800, (7201, 7299)),
    Commune("Niederanven", "Luxembourg", 6_700, (6901, 6990)),
    Commune("Steinsel", "Luxembourg", 5_600, (7301, 7349)),
    Commune("Schuttrange", "Luxembourg", 4_300, (5351, 5372)),
    Commune("Contern", "Luxembourg", 4_000, (5310, 5339)),
    Commune("Sandweiler", "Luxembourg", 3_900, (5201, 5299)),
    Commune("Weiler-la-Tour", "Luxembourg", 2_600, (5750, 5775)),
    Commune("Esch-sur-Alzette", "Esch-sur-Alzette", 37_000, (4001, 4399)),
    Commune("Differdange", "Esch-sur-Alzette", 29_000, (4501, 4699)),
    Commune("Dudelange", "Esch-sur-Alzette", 22_000, (3401, 3499)),
    Commune("Pétange", "Esch-sur-Alzette", 20_500, (4701, 4799)),
    Commune("Sanem", "Esch-sur-Alzette", 18_500, (4401, 4499)),
    Commune("Schifflange", "Esch-sur-Alzette", 11_500, (3801, 3899)),
    Commune("Bettembourg", "Esch-sur-Alzette", 11_000, (3201, 3299)),
    Commune("Käerjeng", "Esch-sur-Alzette", 11_000, (4901, 4999)),
    Commune("Kayl", "Esch-sur-Alzette", 9_500, (3601, 3699)),
    Commune("Mondercange", "Esch-sur-Alzette", 7_300, (3901, 3949)),
    Commune("Roeser", "Esch-sur-Alzette", 6_000, (3301, 3349)),
    Commune("Rumelange", "Esch-sur-Alzette", 5_700, (3701, 3799)),
    Commune("Reckange-sur-Mess", "Esch-sur-Alzette", 2_700, (3950, 3999)),
    Commune("Leudelange", "Esch-sur-Alzette", 2_800, (3350, 3399)),
    Commune("Mamer", "Capellen", 9_500, (8201, 8299)),
    Commune("Kehlen", "Capellen", 6_500, (8281, 8289)),
    Commune("Steinfort", "Capellen", 5_800, (8401, 8499)),
    Commune("Dippach", "Capellen", 4_700, (4996, 4999)),
    Commune("Habscht", "Capellen", 4_500, (8301, 8399)),
    Commune("Kopstal", "Capellen", 4_200, (8181, 8190)),
    Commune("Koerich", "Capellen", 2_700, (8380, 8399)),
    Commune("Garnich", "Capellen", 2_200, (8350, 8379)),
    Commune("Mersch", "Mersch", 9_800, (7501, 7599)),
    Commune("Helperknapp", "Mersch", 4_500, (7401, 7449)),
    Commune("Lorentzweiler", "Mersch", 4_000, (7350, 7399)),
    Commune("Bissen", "Mersch", 3_400, (7701, 7799)),
    Commune("Lintgen", "Mersch", 3_100, (7450, 7499)),
    Commune("Larochette", "Mersch", 2_300, (7601, 7699)),
    Commune("Ettelbruck", "Diekirch", 9_500, (9001, 9099)),
    Commune("Diekirch", "Diekirch", 7_300, (9201, 9299)),
    Commune("Bettendorf", "Diekirch", 2_900, (9350, 9399)),
    Commune("Vallée de l'Ernz", "Diekirch", 2_800, (9301, 9349)),
    Commune("Erpeldange-sur-Sûre", "Diekirch", 2_700, (9101, 9199)),
    Commune("Colmar-Berg", "Diekirch", 2_500, (7730, 7799)),
    Commune("Junglinster", "Grevenmacher", 8_000, (6101, 6199)),
    Commune("Grevenmacher", "Grevenmacher", 5_000, (6701, 6799)),
    Commune("Mertert", "Grevenmacher", 5_000, (6601, 6699)),
    Commune("Betzdorf", "Grevenmacher", 4_300, (6801, 6899)),
    Commune("Wormeldange", "Grevenmacher", 3_000, (5401, 5499)),
    Commune("Flaxweiler", "Grevenmacher", 2_200, (6901, 6999)),
    Commune("Mondorf-les-Bains", "Remich", 5_500, (5601, 5699)),
    Commune("Schengen", "Remich", 5_200, (5440, 5499)),
    Commune("Remich", "Remich", 3_800, (5501, 5599)),
    Commune("Dalheim", "Remich", 2_500, (5680, 5699)),
    Commune("Stadtbredimus", "Remich", 2_500, (5450, 5499)),
    Commune("Echternach", "Echternach", 5_800, (6401, 6499)),
    Commune("Rosport-Mompach", "Echternach", 3_800, (6501, 6599)),
    Commune("Consdorf", "Echternach", 2_100, (6201, 6299)),
    Commune("Berdorf", "Echternach", 2_000, (6550, 6599)),
    Commune("Waldbillig", "Echternach", 1_900, (7601, 7699)),
    Commune("Clervaux", "Clervaux", 5_800, (9701, 9799)),
    Commune("Wincrange", "Clervaux", 4_600, (9701, 9799)),
    Commune("Parc Hosingen", "Clervaux", 3_600, (9801, 9899)),
    Commune("Troisvierges", "Clervaux", 3_400, (9901, 9999)),
    Commune("Weiswampach", "Clervaux", 2_200, (9990, 9999)),
    Commune("Rambrouch", "Redange", 4_600, (8801, 8899)),
    Commune("Redange-sur-Attert", "Redange", 3_300, (8501, 8599)),
    Commune("Beckerich", "Redange", 2_900, (8521, 8599)),
    Commune("Useldange", "Redange", 2_000, (8701, 8799)),
    Commune("Groussbus-Wal", "Redange", 2_000, (8601, 8699)),
    Commune("Vianden", "Vianden", 2_200, (9401, 9499)),
    Commune("Tandel", "Vianden", 2_400, (9380, 9399)),
    Commune("Putscheid", "Vianden", 1_100, (9450, 9499)),
    Commune("Wiltz", "Wiltz", 7_500, (9501, 9599)),
    Commune("Esch-sur-Sûre", "Wiltz", 3_000, (9650, 9699)),
    Commune("Lac de la Haute-Sûre", "Wiltz", 2_100, (9601, 9649)),
    Commune("Goesdorf", "Wiltz", 1_600, (9650, 9699)),
    Commune("Boulaide", "Wiltz", 1_700, (9601, 9649)),
)


@dataclass(frozen=True)
class BorderTown:
    name: str
    country: str  # ISO 3166-1 alpha-2
    postcode: str
    weight: int


# Where cross-border insured patients live (most of them in Lorraine).
BORDER_TOWNS: tuple[BorderTown, ...] = (
    BorderTown("Thionville", "FR", "57100", 30),
    BorderTown("Metz", "FR", "57000", 20),
    BorderTown("Longwy", "FR", "54400", 10),
    BorderTown("Yutz", "FR", "57970", 8),
    BorderTown("Hettange-Grande", "FR", "57330", 6),
    BorderTown("Audun-le-Tiche", "FR", "57390", 5),
    BorderTown("Villerupt", "FR", "54190", 5),
    BorderTown("Arlon", "BE", "6700", 14),
    BorderTown("Aubange", "BE", "6790", 6),
    BorderTown("Messancy", "BE", "6780", 4),
    BorderTown("Bastogne", "BE", "6600", 3),
    BorderTown("Trier", "DE", "54290", 14),
    BorderTown("Konz", "DE", "54329", 4),
    BorderTown("Saarburg", "DE", "54439", 3),
    BorderTown("Perl", "DE", "66706", 4),
    BorderTown("Merzig", "DE", "66663", 3),
    BorderTown("Bitburg", "DE", "54634", 3),
)

CANTON_OF_COMMUNE: dict[str, str] = {c.name: c.canton for c in COMMUNES}
