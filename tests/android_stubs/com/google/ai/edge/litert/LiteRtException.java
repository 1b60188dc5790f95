package com.google.ai.edge.litert;
public class LiteRtException extends Exception {}
