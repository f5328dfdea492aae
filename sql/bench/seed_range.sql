-- The seed's figures (identifiers) from the seed's SQL rewritten over a range.
SELECT {figures} FROM ({ranged}) AS s
