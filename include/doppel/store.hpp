// The store layer's public entry points: persistence (SQLite / PostgreSQL) and blobs.
#pragma once
#include "doppel/store/blob_store.hpp"  // content-addressed, optionally encrypted blobs
#include "doppel/store/database.hpp"    // open_database: the SQL connection
#include "doppel/store/records.hpp"     // the stored records
#include "doppel/store/repository.hpp"  // every record behind one interface
