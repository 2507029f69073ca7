"""Given names, family names and street names of Luxembourg's main communities.

Sampling weights of the origins follow the resident population roughly:
Luxembourgish, then Portuguese (the largest foreign community), French, German.
"""

from __future__ import annotations

ORIGINS: dict[str, float] = {"lu": 0.47, "pt": 0.21, "fr": 0.19, "de": 0.13}

FEMALE: dict[str, tuple[str, ...]] = {
    "lu": ("Anne", "Carole", "Christiane", "Claudine", "Emma", "Jil", "Joëlle", "Josée", "Laura", "Léa",
           "Lena", "Lis", "Marie", "Martine", "Mia", "Michèle", "Nathalie", "Nora", "Sandra", "Sophie",
           "Tessy", "Lynn", "Mandy", "Romy"),
    "pt": ("Ana", "Beatriz", "Carla", "Catarina", "Conceição", "Fátima", "Filipa", "Inês", "Joana",
           "Maria", "Mariana", "Rita", "Sofia", "Sónia", "Vanessa", "Cátia", "Patrícia", "Leonor"),
    "fr": ("Aurélie", "Camille", "Céline", "Chloé", "Claire", "Élodie", "Françoise", "Hélène", "Inès",
           "Isabelle", "Julie", "Manon", "Margaux", "Zoé", "Émilie", "Louise", "Valérie", "Nadine"),
    "de": ("Anja", "Greta", "Hannah", "Jana", "Johanna", "Katharina", "Lea", "Monika", "Petra",
           "Sabine", "Ursula", "Birgit", "Jutta", "Charlotte", "Frieda", "Heike"),
}  # fmt: skip

MALE: dict[str, tuple[str, ...]] = {
    "lu": ("Ben", "Charel", "Claude", "Fernand", "Gilles", "Jang", "Jean", "Luc", "Marc", "Max", "Mett",
           "Nico", "Paul", "Pol", "Romain", "Tom", "Yves", "Serge", "Guy", "Raymond", "Gast", "Jos"),
    "pt": ("António", "Diogo", "Francisco", "João", "José", "Manuel", "Nuno", "Paulo", "Pedro",
           "Ricardo", "Rui", "Tiago", "Sérgio", "Hélder", "Joaquim", "Fábio", "Gonçalo"),
    "fr": ("Antoine", "Guillaume", "Hugo", "Julien", "Louis", "Lucas", "Mathieu", "Nicolas", "Noé",
           "Pierre", "Théo", "Thomas", "Jérôme", "François", "Sébastien", "Olivier", "Benoît"),
    "de": ("Andreas", "Felix", "Jonas", "Jörg", "Jürgen", "Klaus", "Leon", "Lukas", "Maximilian",
           "Michael", "Stefan", "Sven", "Günter", "Tobias", "Matthias", "Dieter"),
}  # fmt: skip

FAMILY: dict[str, tuple[str, ...]] = {
    "lu": ("Becker", "Berchem", "Bettendorf", "Bintner", "Braun", "Dostert", "Faber", "Feltgen",
           "Flammang", "Frisch", "Gengler", "Gloden", "Goergen", "Hansen", "Hentges", "Hilbert",
           "Hoffmann", "Hoscheit", "Jacoby", "Kayser", "Kieffer", "Klein", "Konsbruck", "Kremer",
           "Krier", "Lanners", "Lentz", "Majerus", "Mergen", "Mersch", "Meyer", "Muller", "Peiffer",
           "Pundel", "Reuter", "Ries", "Roller", "Schanck", "Schmit", "Schmitz", "Schroeder",
           "Steichen", "Theis", "Thill", "Thilmany", "Wagner", "Wampach", "Weber", "Weis", "Welter",
           "Wirtz", "Zenner"),
    "pt": ("Almeida", "Alves", "Antunes", "Cardoso", "Carvalho", "Coelho", "Correia", "Costa", "Cruz",
           "Cunha", "Da Silva", "Dos Santos", "Fernandes", "Ferreira", "Fonseca", "Gomes",
           "Gonçalves", "Jesus", "Lopes", "Magalhães", "Marques", "Martins", "Matos", "Mendes",
           "Monteiro", "Moreira", "Neves", "Nunes", "Oliveira", "Pereira", "Pinto", "Pires", "Ramos",
           "Reis", "Ribeiro", "Rocha", "Rodrigues", "Simões", "Soares", "Sousa", "Teixeira", "Vieira"),
    "fr": ("André", "Bernard", "Bertrand", "Bonnet", "Collignon", "David", "Dubois", "Dupont",
           "Durand", "Fournier", "François", "Gauthier", "Girard", "Lambert", "Laurent", "Lefebvre",
           "Legrand", "Lejeune", "Lemaire", "Leroy", "Martin", "Mercier", "Michel", "Moreau", "Morel",
           "Perrin", "Petit", "Richard", "Robert", "Roux", "Simon", "Thomas", "Vincent"),
    "de": ("Bauer", "Fischer", "Fuchs", "Hahn", "Hartmann", "Herrmann", "Hofmann", "Huber", "Jung",
           "Kaiser", "Koch", "Köhler", "König", "Krause", "Krüger", "Lang", "Lange", "Lehmann",
           "Maier", "Mayer", "Meier", "Möller", "Müller", "Neumann", "Peters", "Richter", "Schäfer",
           "Schmid", "Schmidt", "Schneider", "Scholz", "Schröder", "Schulz", "Schwarz", "Walter",
           "Weiß", "Werner", "Wolf", "Zimmermann"),
}  # fmt: skip

STREETS_LU: tuple[str, ...] = (
    "rue de la Gare", "Grand-Rue", "rue Principale", "route d'Arlon", "avenue de la Liberté",
    "rue de l'Église", "rue du Moulin", "rue des Écoles", "rue de Luxembourg", "rue du Château",
    "rue de la Forêt", "rue des Champs", "rue du Parc", "boulevard Royal", "rue Michel Rodange",
    "rue Dicks", "rue de la Montagne", "rue des Prés", "rue du Cimetière", "rue Nic. Welter",
    "Haaptstrooss", "Kierchestrooss", "Bahnhofstrooss", "Schoulstrooss", "Um Bierg", "Am Duerf",
    "route de Thionville", "rue de Hollerich", "avenue Gaston Diderich", "rue Jean-Pierre Brasseur",
)  # fmt: skip

STREETS_ABROAD: dict[str, tuple[str, ...]] = {
    "FR": ("rue de Paris", "rue Nationale", "avenue de la République", "rue Victor Hugo",
           "rue Jean Jaurès", "place de la Liberté", "rue du Général de Gaulle", "rue des Jardins"),
    "BE": ("rue des Déportés", "avenue de Longwy", "rue de Neufchâteau", "Grand-Place",
           "rue de la Semois", "chaussée de Bastogne", "rue du Marché"),
    "DE": ("Hauptstraße", "Bahnhofstraße", "Kirchstraße", "Schulstraße", "Gartenstraße",
           "Bergstraße", "Trierer Straße", "Saarstraße", "Moselstraße"),
}  # fmt: skip
