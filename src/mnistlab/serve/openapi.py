"""/openapi.json: the routes as OpenAPI 3.1. Written out rather than derived from request
models, since the one POST takes images in three encodings; tests check every answer the
app gives against it."""

from mnistlab import meta
from mnistlab.datasets import SIDE
from mnistlab.serve.bodies import MAX_FILES


def openapi(info: dict, max_bytes: int) -> dict:
    """The routes as OpenAPI 3.1, for clients and their generators. Written out, not derived:
    four routes need no framework of request models; tests check every answer against it."""
    classes = len(info.get("classes") or []) or None
    number = {"type": "number", "minimum": 0, "maximum": 1}
    row = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}}
    image28 = {**row, "minItems": SIDE, "maxItems": SIDE}
    grid = {"type": "array", "items": image28, "minItems": SIDE, "maxItems": SIDE}
    pixels = {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
    prediction = {
        "type": "object",
        "required": [
            "class",
            "name",
            "confidence",
            "unsure",
            "unfamiliar",
            "verdict",
            "probabilities",
            "top",
            "input",
        ],  # fmt: skip
        "properties": {
            "class": {"type": "integer", "minimum": 0},
            "name": {"type": "string"},
            "confidence": {**number, "description": "the top probability, calibrated"},
            "unsure": {"type": "boolean", "description": "confidence under 0.8"},
            "unfamiliar": {
                "type": "boolean",
                "description": "unlike the training images (for digits: probably not one)",
            },
            "verdict": {"type": "string", "description": "the answer in words"},
            "probabilities": {
                "type": "array",
                "items": number,
                "minItems": classes,
                "maxItems": classes,
            },  # fmt: skip
            "top": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "probability"],
                    "properties": {"name": {"type": "string"}, "probability": number},
                },
            },
            "input": {**grid, "description": "the prepared 28x28 image the model saw"},
        },
    }
    model = {
        "type": "object",
        "required": ["run", "weights", "mnistlab"],
        "properties": {
            "run": {"type": "string"},
            "weights": {"type": "string", "description": "a hash of the weights"},
            "mnistlab": {"type": "string"},
        },
    }
    digit = prediction
    prediction = {
        **digit,
        "required": [*digit["required"], "model"],
        "properties": {**digit["properties"], "model": model},
    }
    several = {
        "type": "object",
        "description": "a picture of several digits side by side, read as a number",
        "required": ["number", "verdict", "confidence", "unsure", "unfamiliar", "digits", "model"],
        "properties": {
            "number": {"type": "string", "description": "the digits read, left to right"},
            "verdict": {"type": "string", "description": 'each doubtful digit marked "?"'},
            "confidence": {**number, "description": "the digits' confidences multiplied"},
            "unsure": {"type": "boolean", "description": "a digit is unsure"},
            "unfamiliar": {"type": "boolean", "description": "a digit is unlike a digit"},
            "digits": {"type": "array", "items": digit, "minItems": 2},
            "model": model,
        },
    }
    error = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
    item_error = {
        "type": "object",
        "required": ["error", "status"],
        "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
    }
    batch = {
        "type": "object",
        "required": ["predictions"],
        "properties": {
            "predictions": {
                "type": "array",
                "items": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/Prediction"},
                        {"$ref": "#/components/schemas/Number"},
                        {"$ref": "#/components/schemas/ItemError"},
                    ]
                },
            }  # fmt: skip
        },
    }

    def answer(description, schema, kind="application/json"):
        return {"description": description, "content": {kind: {"schema": schema}}}

    def refused(description):
        return answer(description, {"$ref": "#/components/schemas/Error"})

    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"mnistlab: {info.get('run')}",
            "version": meta.version(),
            "description": f"{info.get('model')}; bodies up to {max_bytes:,} bytes, "
            f"up to {MAX_FILES} images a request",
        },
        "paths": {
            "/": {
                "get": {
                    "responses": {
                        "200": answer("the drawing page", {"type": "string"}, "text/html")
                    }
                }
            },  # fmt: skip
            "/api/predict": {
                "post": {
                    "summary": "classify one image or several",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "image/*": {"schema": binary},
                            "application/octet-stream": {"schema": binary},
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"file": {"type": "array", "items": binary}},
                                }
                            },
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["pixels"],
                                    "properties": {
                                        "pixels": {
                                            "description": "28x28 numbers in 0-255 (white ink "
                                            "on black, as the dataset's), or a list of them",
                                            "oneOf": [
                                                {"type": "array", "items": pixels["items"]},
                                                {"type": "array", "items": pixels},
                                            ],
                                        }
                                    },
                                }
                            },
                        },
                    },
                    "responses": {
                        "200": answer(
                            "one image's prediction (a number's, for several digits side by "
                            "side), or several images' answers",
                            {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/Prediction"},
                                    {"$ref": "#/components/schemas/Number"},
                                    batch,
                                ]
                            },
                        ),
                        "400": refused("a malformed body: empty, bad JSON, wrong shape"),
                        "403": refused("sent by a page of another origin than --cors allows"),
                        "413": refused("a body or an image over the limits"),
                        "415": refused("not an image of a format read here"),
                        "422": refused("an image with no ink"),
                    },
                }
            },
            "/api/model": {
                "get": {
                    "responses": {
                        "200": answer(
                            "the run served and the limits",
                            {
                                "type": "object",
                                "required": ["run", "weights", "model", "classes", "limits"],
                                "properties": {
                                    "run": {"type": "string"},
                                    "weights": {"type": "string"},
                                    "model": {"type": "string"},
                                    "config": {"type": "object"},
                                    "test_accuracy": {"type": ["number", "null"]},
                                    "classes": {"type": "array", "items": {"type": "string"}},
                                    "limits": {
                                        "type": "object",
                                        "required": ["bytes", "pixels"],
                                        "properties": {
                                            "bytes": {"type": "integer"},
                                            "pixels": {"type": "integer"},
                                        },
                                    },
                                },
                            },
                        )
                    }
                }
            },
            "/healthz": {
                "get": {
                    "responses": {
                        "200": answer(
                            "serving",
                            {"type": "object", "properties": {"status": {"const": "ok"}}},
                        )
                    }
                }
            },
            "/openapi.json": {
                "get": {"responses": {"200": answer("this description", {"type": "object"})}}
            },
        },
        "components": {
            "schemas": {
                "Prediction": prediction,
                "Number": several,
                "Error": error,
                "ItemError": item_error,
            }  # fmt: skip
        },
    }
